"""The container files: hadolint on both Dockerfiles, the compose file's structure, and the
pieces the in-image checks and scripts/container-test rely on.

Building and running the image is scripts/container-test's job (minutes, root, a dockerd); these
tests are the fast part that runs in the default suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
    done = subprocess.run([exe, "--config", str(config), "--no-color", "--format", "json", str(dockerfile)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
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
    final_stage = steps[len(kinds) - kinds[::-1].index("FROM") - 1:]
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
    assert "nexus-agents setup --global" in runs[source]


def test_docker_context_holds_only_what_the_images_need() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p.lstrip("!").rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "opencode.json", "src", "docker"}


def test_image_config_takes_url_and_key_from_the_environment() -> None:
    options = json.loads((ROOT / "opencode.json").read_text())["provider"]["custom"]["options"]
    assert options == {"baseURL": "{env:CUSTOM_API_BASE_URL}", "apiKey": "{env:CUSTOM_API_KEY}"}


# -- Dockerfile.sandbox -------------------------------------------------------------------


def test_sandbox_extends_the_official_template_and_returns_to_agent() -> None:
    steps = _instructions(ROOT / "Dockerfile.sandbox")
    args = dict(rest.split("=", 1) for kind, rest in steps if kind == "ARG" and "=" in rest)
    assert args["BASE"] == "docker/sandbox-templates:opencode"
    assert [rest for kind, rest in steps if kind == "FROM"] == ["${BASE}"]
    users = [rest for kind, rest in steps if kind == "USER"]
    assert users[0] == "root" and users[-1] == "agent"
    runs = " ".join(rest for kind, rest in steps if kind == "RUN")
    assert "nexus-agents setup --global" in runs


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
    done = subprocess.run([*argv, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert resolved["smoke-test"]["image"] == "nexus-opencode:latest"
    assert resolved["e2e"]["network_mode"] == "none"


# -- scripts/container-test ---------------------------------------------------------------


def test_container_test_script_explains_itself() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "container-test"), "--help"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for word in ("--docker-host", "--base", "--purge", "debootstrap", "vfs"):
        assert word in done.stdout


def test_container_test_script_rejects_an_unknown_step() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "container-test"), "--only", "deploy"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "invalid choice: 'deploy'" in done.stderr
    assert "Traceback" not in done.stderr
