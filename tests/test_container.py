"""The container files: hadolint on both Dockerfiles, the compose file's structure, the pieces
the in-image checks and scripts/container-test rely on, the Dockerfiles' `setup` step run against
the repository's example config, and the real build.

The real build (scripts/container-test: image, compose ``smoke-test`` and ``e2e``) starts in the
background when collection is done (tests/container_plugin.py) and is collected by the last test
of the run; where the machine cannot run it, that test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from container_plugin import RUN_SECONDS, ContainerRun

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = ("Dockerfile.opencode", "Dockerfile.sandbox", "docker/sandbox-standin/Dockerfile")
COMPOSE = ROOT / "docker-compose.opencode.yml"
CHECKS_IN_IMAGE = "/opt/nexus/checks/"


def _pinned_opencode_version() -> str:
    match = re.search(r'^OPENCODE_VERSION = "([^"]+)"', (ROOT / "bootstrap.py").read_text(), re.M)
    assert match, "bootstrap.py no longer pins OPENCODE_VERSION"
    return match.group(1)


def _hadolint(dockerfile: Path, tmp_path: Path) -> list[dict]:
    """hadolint's findings for one Dockerfile, with a fixed config (no user config leaks in)."""
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: info\n")
    done = subprocess.run(
        [exe, "--config", str(config), "--no-color", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.stdout.strip().startswith("["), f"hadolint did not report JSON: {done.stdout!r} {done.stderr!r}"
    return json.loads(done.stdout)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# -- hadolint -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_reports_nothing(name: str, tmp_path: Path) -> None:
    findings = _hadolint(ROOT / name, tmp_path)
    assert findings == [], "\n".join(f"{name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)


def test_hadolint_does_catch_errors(tmp_path: Path) -> None:
    """The lint harness can fail: a Dockerfile with known mistakes gets error-level findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm-slim\nCOPY a b c\nRUN sudo apt-get install -y curl\nENTRYPOINT opencode\n")
    findings = _hadolint(bad, tmp_path)
    assert {"DL3021", "DL3004"} <= {f["code"] for f in findings}
    assert any(f["level"] == "error" for f in findings)


# -- Dockerfile.opencode ------------------------------------------------------------------


def test_opencode_image_is_pinned_non_root_with_entrypoint_and_healthcheck() -> None:
    steps = _instructions(ROOT / "Dockerfile.opencode")
    kinds = [kind for kind, _ in steps]
    args = dict(rest.split("=", 1) for kind, rest in steps if kind == "ARG" and "=" in rest)
    assert args["OPENCODE_VERSION"] == _pinned_opencode_version()
    assert args["BASE"].startswith("debian:bookworm")
    assert steps[kinds.index("FROM")] == ("FROM", "${BASE} AS runtime")
    final_stage = steps[len(kinds) - kinds[::-1].index("FROM") - 1 :]
    final = dict(final_stage)
    assert final["USER"] == "1000:1000"
    assert re.search(r"useradd .*--uid 1000 nexus", (ROOT / "Dockerfile.opencode").read_text())
    assert json.loads(final["ENTRYPOINT"]) == ["opencode"]
    assert "HEALTHCHECK" in final and json.loads(final["HEALTHCHECK"].split("CMD", 1)[1]) == ["opencode", "--version"]
    assert "OPENCODE_DISABLE_AUTOUPDATE=1" in final["ENV"]


def test_opencode_image_installs_dependencies_before_the_source() -> None:
    runs = [rest for kind, rest in _instructions(ROOT / "Dockerfile.opencode") if kind == "RUN"]
    deps = next(i for i, r in enumerate(runs) if "source=pyproject.toml" in r and "-r /tmp/requirements.txt" in r)
    source = next(i for i, r in enumerate(runs) if "--no-deps" in r and "nexus-src" in r)
    opencode = next(i for i, r in enumerate(runs) if '"opencode-ai@${OPENCODE_VERSION}"' in r)
    assert opencode < deps < source
    assert "nexus-agents setup --global --force" in runs[source]


def test_docker_context_holds_only_what_the_images_need() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p.lstrip("!").rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "setup.py", "README.md", "opencode.json", "src", "styles", "docker"}


def test_image_config_takes_url_and_key_from_the_environment() -> None:
    options = json.loads((ROOT / "opencode.json").read_text())["provider"]["custom"]["options"]
    assert options == {"baseURL": "{env:CUSTOM_API_BASE_URL}", "apiKey": "{env:CUSTOM_API_KEY}"}


# -- the Dockerfiles' setup step, for real, on the example config ------------------------


def _setup_args(dockerfile: Path) -> list[str]:
    """The arguments the Dockerfile passes to ``nexus-agents setup`` (exactly one such step)."""
    runs = " ".join(rest for kind, rest in _instructions(dockerfile) if kind == "RUN")
    found = re.findall(r"nexus-agents setup((?: --[a-z-]+)*)", runs)
    assert len(found) == 1, f"{dockerfile.name} must run `nexus-agents setup` once, found {found}"
    return found[0].split()


def _run_setup_step(args: list[str], config_text: str | None, env: dict[str, str], tmp_path: Path):
    """Run the image's setup step in a temporary HOME whose global config is ``config_text``."""
    config = Path(env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json"
    if config_text is not None:
        config.parent.mkdir(parents=True)
        config.write_text(config_text)
    done = run_cli(["setup", *args], env, tmp_path)
    return done, config


def _example_with(entry: dict | None) -> str:
    """The repository's opencode.json with ``mcp.nexus-agents`` set to ``entry`` (None: removed)."""
    data = json.loads((ROOT / "opencode.json").read_text())
    data.setdefault("mcp", {}).pop("nexus-agents", None)
    if entry is not None:
        data["mcp"]["nexus-agents"] = entry
    return json.dumps(data, indent=2)


def test_opencode_image_config_is_the_repository_example() -> None:
    """The setup step edits a copy of opencode.json, so the tests below run it on that file."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile.opencode").read_text())
    assert "--mount=type=bind,source=opencode.json,target=/tmp/opencode.json" in text
    assert "cp /tmp/opencode.json /home/nexus/.config/opencode/opencode.json" in text
    assert "HOME=/home/nexus XDG_CONFIG_HOME=/home/nexus/.config" in text


@pytest.mark.parametrize(
    "example",
    [
        pytest.param(None, id="as-in-the-repository"),
        pytest.param({"type": "local", "command": ["nexus-agents", "--mode=server"], "enabled": True}, id="bare"),
        pytest.param({"type": "local", "command": ["/usr/bin/other", "x"], "timeout": 9000}, id="foreign"),
        pytest.param("absent", id="no-entry"),
    ],
)
def test_opencode_image_setup_step_writes_the_absolute_command(
    example: dict | str | None, hermetic_env: dict[str, str], tmp_path: Path
) -> None:
    """Dockerfile.opencode's setup step, as the build runs it, on the example config whatever
    MCP entry it carries: it succeeds and the entry runs this installation by absolute path."""
    text = (
        (ROOT / "opencode.json").read_text()
        if example is None
        else _example_with(example if isinstance(example, dict) else None)  # "absent": no entry
    )
    done, config = _run_setup_step(_setup_args(ROOT / "Dockerfile.opencode"), text, hermetic_env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    written = json.loads(config.read_text())
    entry = written["mcp"]["nexus-agents"]
    installed = shutil.which("nexus-agents", path=hermetic_env.get("PATH"))
    assert entry["command"] == [installed, "--mode=server"]
    assert Path(entry["command"][0]).is_absolute()
    assert entry["enabled"] is True and entry["type"] == "local"
    assert written["provider"] == json.loads((ROOT / "opencode.json").read_text())["provider"]
    if example == "foreign":
        assert entry["timeout"] == 9000  # setup keeps the user's own keys


def test_setup_step_without_force_is_what_broke_the_build(hermetic_env: dict[str, str], tmp_path: Path) -> None:
    """The check above can fail: without --force, a bare entry in the example stops the build."""
    args = [a for a in _setup_args(ROOT / "Dockerfile.opencode") if a != "--force"]
    bare = {"type": "local", "command": ["nexus-agents", "--mode=server"], "enabled": True}
    done, _ = _run_setup_step(args, _example_with(bare), hermetic_env, tmp_path)
    assert done.returncode != 0
    assert "already has a different mcp.nexus-agents entry" in done.stdout + done.stderr


@pytest.mark.parametrize("template", [None, '{"$schema": "https://opencode.ai/config.json"}', "bare"])
def test_sandbox_setup_step_writes_the_absolute_command(
    template: str | None, hermetic_env: dict[str, str], tmp_path: Path
) -> None:
    """Dockerfile.sandbox's setup step on what the template may carry: nothing, a config
    without MCP servers, or a bare ``nexus-agents`` entry."""
    if template == "bare":
        template = _example_with({"type": "local", "command": ["nexus-agents", "--mode=server"]})
    done, config = _run_setup_step(_setup_args(ROOT / "Dockerfile.sandbox"), template, hermetic_env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    command = json.loads(config.read_text())["mcp"]["nexus-agents"]["command"]
    assert Path(command[0]).is_absolute() and command[1:] == ["--mode=server"]


# -- Dockerfile.sandbox -------------------------------------------------------------------


def test_sandbox_extends_the_official_template_and_returns_to_agent() -> None:
    steps = _instructions(ROOT / "Dockerfile.sandbox")
    args = dict(rest.split("=", 1) for kind, rest in steps if kind == "ARG" and "=" in rest)
    assert args["BASE"] == "docker/sandbox-templates:opencode"
    assert [rest for kind, rest in steps if kind == "FROM"] == ["${BASE}"]
    users = [rest for kind, rest in steps if kind == "USER"]
    assert users[0] == "root" and users[-1] == "agent"
    runs = " ".join(rest for kind, rest in steps if kind == "RUN")
    assert "nexus-agents setup --global --force" in runs


# -- docker-compose.opencode.yml ----------------------------------------------------------


def test_compose_services_use_the_image_built_from_dockerfile_opencode() -> None:
    services = _compose()["services"]
    assert {"smoke-test", "e2e"} <= set(services)
    for name, service in services.items():
        assert service["image"].startswith("${NEXUS_OPENCODE_IMAGE:-nexus-opencode"), name
        assert service["build"]["dockerfile"] == "Dockerfile.opencode", name
        assert service["build"]["context"] == ".", name
        assert "BASE" in service["build"]["args"], name


@pytest.mark.parametrize("name, script", [("smoke-test", "smoke.py"), ("e2e", "e2e.py")])
def test_compose_test_services_run_checks_that_exist_without_network(name: str, script: str) -> None:
    service = _compose()["services"][name]
    assert service["network_mode"] == "none"
    entrypoint = service["entrypoint"]
    assert entrypoint[0] == "/opt/nexus/venv/bin/python"
    assert entrypoint[1] == CHECKS_IN_IMAGE + script
    assert (ROOT / "docker" / "checks" / script).is_file()
    assert all(isinstance(arg, str) for arg in service["command"])
    assert "CUSTOM_API_KEY" not in (service.get("environment") or {})


def test_smoke_test_expects_the_pinned_opencode_version() -> None:
    command = _compose()["services"]["smoke-test"]["command"]
    assert command[command.index("--opencode-version") + 1] == _pinned_opencode_version()


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    """The real compose tool accepts the file (skipped where neither compose is installed)."""
    legacy = shutil.which("docker-compose")
    docker = shutil.which("docker")
    if legacy:
        argv = [legacy]
    elif docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        argv = [docker, "compose"]
    else:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXUS_", "DOCKER_", "COMPOSE_"))}
    done = subprocess.run(
        [*argv, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert resolved["smoke-test"]["image"] == "nexus-opencode:latest"
    assert resolved["e2e"]["network_mode"] == "none"


# -- scripts/container-test ---------------------------------------------------------------


def test_container_test_script_explains_itself() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "container-test"), "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    for word in ("--docker-host", "--base", "--purge", "debootstrap", "vfs"):
        assert word in done.stdout


def test_container_test_script_rejects_an_unknown_step() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "container-test"), "--only", "deploy"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "invalid choice: 'deploy'" in done.stderr
    assert "Traceback" not in done.stderr


# -- the real build -----------------------------------------------------------------------


@pytest.mark.container_build
def test_image_builds_and_passes_smoke_and_e2e(container_run: ContainerRun) -> None:
    """scripts/container-test, started at collection time, builds Dockerfile.opencode; in the
    image `opencode mcp list` shows nexus-agents connected (smoke-test) and an `opencode run`
    calls a nexus MCP tool through the in-container reference gateway, no key, no network (e2e)."""
    if container_run.skip_reason is not None:
        pytest.skip(f"container build not run: {container_run.skip_reason}")
    returncode, output = container_run.wait(RUN_SECONDS - (time.time() - container_run.started))
    tail = "\n".join(output.strip().splitlines()[-30:])
    assert returncode == 0, f"scripts/container-test exited {returncode} (log: {container_run.log_path}):\n{tail}"
    assert "ok    MCP server connects: opencode mcp list: nexus-agents connected" in output
    assert "ran through the nexus MCP server" in output
    assert "e2e: passed" in output
