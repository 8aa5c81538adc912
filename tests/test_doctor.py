"""The doctor against real faults: the reference gateway, closed ports, silent and odd servers, real OpenCode."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC
from pathlib import Path

import psutil
import pytest

from conftest import opencode_path, run_cli
from nexus_core.doctor.checks import TESTED_OPENCODE, DoctorReport, opencode_smoke, run_doctor
from nexus_core.gateway import ReferenceGateway, write_opencode_config

KEY = "sk-doctor-" + secrets.token_hex(12)
VERDICT_BOUND_S = 3.5


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


def standin_opencode(directory: Path) -> Path:
    """A directory holding an ``opencode`` that answers ``--version`` as the pinned release does, at once.

    The doctor runs ``opencode --version`` for a binary it has not asked before; the real binary
    takes over a second of CPU for it (seconds of wall on a loaded machine). A test about the gateway, the config or the
    key gets this stand-in, so the OpenCode check stays ``ok`` as with the real one; the tests
    about OpenCode itself use :func:`real_env` (the real binary) or their own :func:`fake_opencode`.
    Anything but ``--version`` fails loudly, so a stand-in can never pass for a smoke.
    """
    directory.mkdir(exist_ok=True)
    exe = directory / "opencode"
    exe.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo {TESTED_OPENCODE}; exit 0; fi\n'
        'echo "stand-in opencode (tests/test_doctor.py) only answers --version" >&2\n'
        "exit 2\n"
    )
    exe.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def standin_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One stand-in for the module: the doctor remembers the binaries it asked, a few at a time."""
    return standin_opencode(tmp_path_factory.mktemp("standin-bin"))


@pytest.fixture
def bare_env(hermetic_env: dict[str, str], standin_bin: Path) -> dict[str, str]:
    """``hermetic_env`` (no key set) with the stand-in ``opencode`` first on PATH."""
    return {**hermetic_env, "PATH": f"{standin_bin}{os.pathsep}{hermetic_env['PATH']}"}


@pytest.fixture
def env(bare_env: dict[str, str]) -> dict[str, str]:
    return {**bare_env, "CUSTOM_API_KEY": KEY}


@pytest.fixture
def real_env(hermetic_env: dict[str, str]) -> dict[str, str]:
    """The key set and the real, pinned OpenCode on PATH: for the tests about OpenCode itself."""
    return {**hermetic_env, "CUSTOM_API_KEY": KEY}


@pytest.fixture
async def gateway() -> AsyncIterator[ReferenceGateway]:
    async with ReferenceGateway(api_key=KEY) as gw:
        yield gw


def configure(project: Path, base_url: str, **options) -> None:
    write_opencode_config(project, base_url, api_key_env="CUSTOM_API_KEY", **options)


def assert_no_key(report: DoctorReport | str) -> None:
    text = report if isinstance(report, str) else report.model_dump_json()
    assert KEY not in text
    assert KEY[10:] not in text


def assert_honest(report: DoctorReport, failing: list[str]) -> None:
    """The named checks fail, the report is not ok, and nothing is ✓ that depends on the broken step."""
    for check_id in failing:
        check = report.get(check_id)
        assert check is not None, check_id
        assert check.status == "fail", (check_id, check)
        assert check.fix, check_id
    assert not report.ok and report.exit_code == 1
    models = report.check("models.custom")
    assert models is None or models.status != "ok"
    assert_no_key(report)


# ---------------------------------------------------------------- a healthy path


async def test_healthy_gateway_every_step_ok(
    project: Path, real_env: dict[str, str], gateway: ReferenceGateway
) -> None:
    configure(project, gateway.base_url)
    report = await run_doctor(project, real_env)
    statuses = {c.id: c.status for c in report.checks}
    assert statuses == {
        "opencode": "ok",
        "config": "ok",
        "provider.custom.base_url": "ok",
        "provider.custom.api_key": "ok",
        "gateway.custom": "ok",
        "models.custom": "ok",
        "registry": "ok",
        "mcp": "warn",
        "probe.chat.custom": "skipped",
        "probe.opencode_run": "skipped",
    }
    assert "--probe" in report.check("probe.chat.custom").summary
    assert report.ok and report.exit_code == 0
    assert report.opencode_version == "1.2.15"
    assert report.gateway_latency_ms is not None and report.gateway_latency_ms > 0
    gw = report.check("gateway.custom")
    assert gw.data["models"] == ["claude-opus-4-5", "claude-sonnet-4-5"]
    timings = gw.data["timings"]
    assert timings["connect_ms"] is not None and timings["first_byte_ms"] is not None
    assert timings["dns_ms"] is None and timings["tls_ms"] is None  # an IP literal over plain HTTP
    assert report.check("provider.custom.api_key").summary == "set, from {env:CUSTOM_API_KEY}"
    assert "opencode.json" in report.check("config").detail
    assert gateway.requests and gateway.requests[-1].bearer == "expected"
    assert_no_key(report)


async def test_latency_shows_in_first_byte(project: Path, env: dict[str, str], gateway: ReferenceGateway) -> None:
    gateway.add_fault("latency=0.6,path=/models")
    configure(project, gateway.base_url)
    report = await run_doctor(project, env)
    timings = report.check("gateway.custom").data["timings"]
    assert report.check("gateway.custom").status == "ok"
    assert timings["first_byte_ms"] >= 600
    assert timings["connect_ms"] < 600


# ---------------------------------------------------------------- every fault of the reference gateway


FAULTS = [
    ("401", "unauthorized", "rejects the key", "key"),
    ("403", "forbidden", "403", "access"),
    ("404", "not_found", "404", "baseURL"),
    ("429", "rate_limited", "Retry-After: 1", "quota"),
    ("500", "server_error", "500", "retries 5xx forever"),
    ("502", "server_error", "502", "logs"),
    ("drop", "connection_dropped", "closed it without an HTTP answer", "logs"),
    ("cut,path=/models", "connection_dropped", "closed the connection mid-body", "cuts answers short"),
    ("503", "server_error", "503", "retries 5xx forever"),
    ("html", "not_json", "HTML page", "proxy"),
    ("bad-models", "malformed_model_list", "not valid JSON", "/models is broken"),
    ("bad-models=shape", "malformed_model_list", "not an OpenAI model list", "/models is broken"),
]


@pytest.mark.parametrize(("spec", "cause", "said", "fixed"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_gateway_fault_is_named_with_its_fix(
    project: Path, env: dict[str, str], gateway: ReferenceGateway, spec: str, cause: str, said: str, fixed: str
) -> None:
    gateway.add_fault(spec)
    configure(project, gateway.base_url)
    report = await run_doctor(project, env)
    check = report.check("gateway.custom")
    assert check.cause == cause, check
    assert said in check.summary
    assert fixed in check.fix
    assert_honest(report, ["gateway.custom"])
    key = report.check("provider.custom.api_key")
    assert key.status == ("fail" if spec in ("401", "403") else "ok")


async def test_silent_gateway_verdict_within_bound(
    project: Path, env: dict[str, str], gateway: ReferenceGateway
) -> None:
    gateway.add_fault("silent")
    configure(project, gateway.base_url)
    began = time.perf_counter()
    report = await run_doctor(project, env)
    elapsed = time.perf_counter() - began
    check = report.check("gateway.custom")
    assert check.cause == "timeout"
    assert "accepted the connection but sent no answer" in check.summary
    assert "hung" in check.fix
    assert elapsed < VERDICT_BOUND_S
    assert_honest(report, ["gateway.custom"])


# ---------------------------------------------------------------- network-level faults


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_closed_port_is_connection_refused(project: Path, env: dict[str, str]) -> None:
    port = closed_port()
    configure(project, f"http://127.0.0.1:{port}/v1")
    began = time.perf_counter()
    report = await run_doctor(project, env)
    assert time.perf_counter() - began < VERDICT_BOUND_S
    check = report.check("gateway.custom")
    assert check.cause == "connection_refused"
    assert f"127.0.0.1:{port}" in check.summary and "start the gateway" in check.fix
    assert check.data["timings"]["connect_ms"] is not None
    assert_honest(report, ["gateway.custom"])
    assert report.check("models.custom").status == "skipped"


async def test_unresolvable_host_is_dns_failure(project: Path, env: dict[str, str]) -> None:
    configure(project, "http://nexus-doctor-test.invalid/v1")
    report = await run_doctor(project, env)
    check = report.check("gateway.custom")
    assert check.cause == "dns_failure"
    assert "nexus-doctor-test.invalid" in check.summary and "DNS" in check.fix
    assert check.data["timings"]["dns_ms"] is not None
    assert_honest(report, ["gateway.custom"])


async def test_https_to_plain_http_is_tls_error(project: Path, env: dict[str, str], gateway: ReferenceGateway) -> None:
    configure(project, gateway.base_url.replace("http://", "https://"))
    report = await run_doctor(project, env)
    check = report.check("gateway.custom")
    assert check.cause == "tls_error"
    assert "http://" in check.fix
    assert_honest(report, ["gateway.custom"])


class TinyServer:
    """A loopback HTTP/1.1 server with one handler: (path, headers) -> (status, content type, body)."""

    def __init__(
        self, handler: Callable[[str, dict[str, str]], tuple[int, str, str]], tls: ssl.SSLContext | None = None
    ) -> None:
        self.handler = handler
        self.tls = tls
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> TinyServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def root(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"https://localhost:{port}" if self.tls else f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            status, kind, body = self.handler(path, headers)
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()


def v1_only(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
    if path == "/v1/models":
        return (
            200,
            "application/json",
            json.dumps({"object": "list", "data": [{"id": "claude-opus-4-5"}, {"id": "claude-sonnet-4-5"}]}),
        )
    return 404, "application/json", json.dumps({"error": {"message": f"no route {path}"}})


async def test_missing_v1_is_wrong_base_path_with_the_exact_url(project: Path, env: dict[str, str]) -> None:
    async with TinyServer(v1_only) as server:
        root = server.root
        configure(project, root)
        report = await run_doctor(project, env)
    check = report.check("gateway.custom")
    assert check.cause == "not_found"
    assert "wrong base path" in check.summary
    assert check.fix == f"set baseURL to {root}/v1: GET {root}/v1/models answers with 2 model(s)"
    assert_honest(report, ["gateway.custom"])


async def test_wrong_base_path_never_guesses_v1_when_that_is_not_found_either(
    project: Path, env: dict[str, str]
) -> None:
    async with TinyServer(lambda path, headers: (404, "application/json", "{}")) as server:
        root = server.root
        configure(project, root)
        report = await run_doctor(project, env)
    check = report.check("gateway.custom")
    assert check.cause == "not_found"
    assert f"set baseURL to {root}/v1" not in check.fix
    assert f"{root}/v1/models is not found either" in check.fix
    assert_honest(report, ["gateway.custom"])


async def test_error_body_echoing_headers_never_shows_the_key(project: Path, env: dict[str, str]) -> None:
    def echo(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        return 401, "text/plain", f"denied; you sent {json.dumps(headers)}"

    async with TinyServer(echo) as server:
        configure(project, server.root + "/v1")
        report = await run_doctor(project, env)
    check = report.check("gateway.custom")
    assert check.cause == "unauthorized"
    assert "authorization" in check.detail.lower() and "[redacted]" in check.detail
    assert_honest(report, ["gateway.custom", "provider.custom.api_key"])


# ---------------------------------------------------------------- config-level problems


async def test_unset_key_variable_fails_when_the_gateway_needs_a_key(
    project: Path, bare_env: dict[str, str], gateway: ReferenceGateway
) -> None:
    configure(project, gateway.base_url)
    report = await run_doctor(project, bare_env)
    key = report.check("provider.custom.api_key")
    assert key.cause == "key_unset"
    assert "NOT SET, from {env:CUSTOM_API_KEY}" in key.summary and "no Authorization header" in key.summary
    assert "export CUSTOM_API_KEY" in key.fix
    check = report.check("gateway.custom")
    assert check.cause == "unauthorized" and "none is sent" in check.summary
    assert "CUSTOM_API_KEY" in check.fix
    assert_honest(report, ["provider.custom.api_key", "gateway.custom"])
    assert gateway.requests[-1].bearer == "absent"


async def test_unset_key_variable_is_a_warning_when_the_gateway_needs_none(
    project: Path, bare_env: dict[str, str]
) -> None:
    async with ReferenceGateway() as open_gateway:
        configure(project, open_gateway.base_url)
        report = await run_doctor(project, bare_env)
    assert report.check("provider.custom.api_key").status == "warn"
    assert report.check("gateway.custom").status == "ok"
    assert report.ok


async def test_model_missing_on_gateway_fails_the_model_check(project: Path, env: dict[str, str]) -> None:
    async with ReferenceGateway(api_key=KEY, models=["claude-sonnet-4-5", "claude-opus-4-6"]) as gw:
        configure(project, gw.base_url)
        report = await run_doctor(project, env)
    check = report.check("models.custom")
    assert check.status == "fail" and check.cause == "model_not_served"
    assert "custom/claude-opus-4-5 is declared in" in check.summary
    assert "the gateway does not serve claude-opus-4-5; the gateway serves claude-opus-4-6" in check.summary
    assert "rename the key claude-opus-4-5 to claude-opus-4-6" in check.fix
    assert "set cli_model_name of opencode-custom-opus to custom/claude-opus-4-6" in check.fix
    assert report.check("gateway.custom").status == "ok"
    assert not report.ok


async def test_registry_name_mismatch_gets_the_exact_suggestion(project: Path, env: dict[str, str]) -> None:
    async with ReferenceGateway(api_key=KEY, models=["claude-opus-4-6", "claude-sonnet-4-5"]) as gw:
        configure(project, gw.base_url, models=["claude-opus-4-6", "claude-sonnet-4-5"])
        report = await run_doctor(project, env)
    check = report.check("models.custom")
    assert check.status == "warn" and check.cause == "registry_mismatch"
    assert check.summary == (
        "opencode-custom-opus uses custom/claude-opus-4-5; opencode.json declares claude-opus-4-6; "
        "the gateway serves claude-opus-4-6"
    )
    assert (
        f"set cli_model_name of opencode-custom-opus to custom/claude-opus-4-6 in {project}/.nexus/models.json"
        in check.fix
    )
    # The gateway does not serve claude-opus-4-5: renaming the declared key to it would break the path.
    assert "rename the key claude-opus-4-6 to claude-opus-4-5" not in check.fix

    overlay = project / ".nexus" / "models.json"
    overlay.parent.mkdir()
    overlay.write_text(json.dumps({"models": {"opencode-custom-opus": {"cli_model_name": "custom/claude-opus-4-6"}}}))
    async with ReferenceGateway(api_key=KEY, models=["claude-opus-4-6", "claude-sonnet-4-5"]) as gw:
        configure(project, gw.base_url, models=["claude-opus-4-6", "claude-sonnet-4-5"])
        fixed = await run_doctor(project, env)
    assert fixed.check("models.custom").status == "ok", fixed.check("models.custom")


async def test_declared_name_the_gateway_lacks_gets_only_fixes_that_land_on_a_served_model(
    project: Path, env: dict[str, str]
) -> None:
    """opencode.json declares (and defaults to) claude-opus-4-6; registry and gateway say claude-opus-4-5."""
    async with ReferenceGateway(api_key=KEY, models=["claude-opus-4-5", "claude-sonnet-4-5"]) as gw:
        configure(
            project, gw.base_url, models=["claude-opus-4-6", "claude-sonnet-4-5"], default_model="claude-opus-4-6"
        )
        report = await run_doctor(project, env)
    check = report.check("models.custom")
    assert check.status == "fail" and check.cause == "model_not_served"
    assert "rename the key claude-opus-4-6 to claude-opus-4-5" in check.fix
    assert 'set "model" to custom/claude-opus-4-5' in check.fix
    assert "custom/claude-opus-4-6 in" not in check.fix
    assert "cli_model_name of opencode-default" not in check.fix


async def test_unset_base_url_variable(project: Path, env: dict[str, str]) -> None:
    (project / "opencode.json").write_text(
        json.dumps(
            {
                "provider": {
                    "custom": {
                        "npm": "@ai-sdk/openai-compatible",
                        "options": {"baseURL": "{env:CUSTOM_API_BASE_URL}", "apiKey": "{env:CUSTOM_API_KEY}"},
                        "models": {"claude-opus-4-5": {}},
                    }
                },
            }
        )
    )
    report = await run_doctor(project, env)
    check = report.check("provider.custom.base_url")
    assert check.cause == "base_url_unset" and "export CUSTOM_API_BASE_URL=" in check.fix
    assert report.check("gateway.custom").status == "skipped"
    assert not report.ok


async def test_broken_config_names_file_line_column(project: Path, env: dict[str, str]) -> None:
    (project / "opencode.json").write_text('{\n  "provider": {\n    "custom": { "npm": "x" \n  }\n')
    report = await run_doctor(project, env)
    check = report.check("config")
    assert check.status == "fail" and check.cause == "config_error"
    assert f"{project / 'opencode.json'}:" in check.summary
    assert check.data["line"] is not None
    assert not report.ok


async def test_mcp_entry_present(project: Path, env: dict[str, str], gateway: ReferenceGateway) -> None:
    configure(project, gateway.base_url)
    config = json.loads((project / "opencode.json").read_text())
    config["mcp"] = {"nexus-agents": {"type": "local", "command": ["python3", "--mode=server"], "enabled": True}}
    (project / "opencode.json").write_text(json.dumps(config))
    report = await run_doctor(project, env)
    assert report.check("mcp").status == "ok"
    config["mcp"]["nexus-agents"]["command"] = ["/nowhere/nexus-agents", "--mode=server"]
    (project / "opencode.json").write_text(json.dumps(config))
    report = await run_doctor(project, env)
    assert report.check("mcp").cause == "mcp_command_missing"


async def test_no_opencode_on_path(
    project: Path, env: dict[str, str], gateway: ReferenceGateway, tmp_path: Path
) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    configure(project, gateway.base_url)
    # NEXUS_OPENCODE names nothing, so the checkout's .tools (the locator's last resort) is not used either.
    missing = str(tmp_path / "no-opencode")
    report = await run_doctor(project, {**env, "PATH": str(empty_bin), "NEXUS_OPENCODE": missing}, probe=True)
    check = report.check("opencode")
    assert missing in check.summary
    assert check.status == "fail" and check.cause == "opencode_missing"
    assert "No model adapter configured" in check.summary
    assert "npm install -g opencode-ai@1.2.15" in check.fix
    assert report.check("probe.opencode_run").status == "skipped"
    assert not report.ok


# ---------------------------------------------------------------- --probe


async def test_probe_streams_a_chat_completion(project: Path, env: dict[str, str], gateway: ReferenceGateway) -> None:
    configure(project, gateway.base_url)
    report = await _probe_without_smoke(project, env)
    chat = report.check("probe.chat.custom")
    assert chat.status == "ok", chat
    assert chat.data["saw_done"] and chat.data["usage"] and chat.data["chunks"] >= 2
    assert gateway.requests[-1].stream and gateway.requests[-1].include_usage


@pytest.mark.parametrize(
    ("spec", "cause"),
    [
        ("cut", "stream_cut"),
        ("malformed-sse", "malformed_stream"),
        ("status=500,path=/chat/completions", "server_error"),
    ],
)
async def test_probe_names_stream_faults(
    project: Path, env: dict[str, str], gateway: ReferenceGateway, spec: str, cause: str
) -> None:
    gateway.add_fault(spec)
    configure(project, gateway.base_url)
    report = await _probe_without_smoke(project, env)
    chat = report.check("probe.chat.custom")
    assert chat.status == "fail" and chat.cause == cause, chat
    assert chat.fix
    assert report.check("gateway.custom").status == "ok"
    assert not report.ok
    assert_no_key(report)


async def test_smoke_waits_for_a_healthy_chat(project: Path, env: dict[str, str], gateway: ReferenceGateway) -> None:
    """OpenCode would retry a 500 forever: the smoke is skipped with the reason instead of hanging."""
    gateway.add_fault("500,path=/chat/completions")
    configure(project, gateway.base_url)
    began = time.perf_counter()
    report = await run_doctor(project, env, probe=True)
    assert time.perf_counter() - began < 10
    assert report.check("probe.chat.custom").cause == "server_error"
    smoke = report.check("probe.opencode_run")
    assert smoke.status == "skipped" and "chat probe" in smoke.summary


async def _probe_without_smoke(project: Path, env: dict[str, str]) -> DoctorReport:
    """--probe with no OpenCode to be found, so only the direct chat probe runs (fast).

    Off PATH is not enough: the locator's last resort is the checkout's .tools, so NEXUS_OPENCODE
    names nothing too (as in test_no_opencode_on_path); else a real `opencode run` smoke would run.
    """
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "opencode").exists())
    missing = str(Path(env["HOME"]) / "no-opencode")
    return await run_doctor(project, {**env, "PATH": path, "NEXUS_OPENCODE": missing}, probe=True)


@pytest.mark.opencode
async def test_probe_smoke_through_real_opencode(
    project: Path, real_env: dict[str, str], gateway: ReferenceGateway
) -> None:
    configure(project, gateway.base_url, default_model="claude-sonnet-4-5")
    report = await run_doctor(project, real_env, probe=True, smoke_timeout=45)
    smoke = report.check("probe.opencode_run")
    assert smoke.status == "ok", smoke
    assert "custom/claude-sonnet-4-5" in smoke.summary and "Reply to:" in smoke.summary
    assert any(r.kind == "chat" and r.bearer == "expected" for r in gateway.requests)
    assert report.ok
    assert_no_key(report)


@pytest.mark.opencode
async def test_smoke_reads_the_error_event_not_the_exit_code(
    project: Path, real_env: dict[str, str], gateway: ReferenceGateway
) -> None:
    gateway.add_fault("401,path=/chat/completions")
    configure(project, gateway.base_url, default_model="claude-sonnet-4-5")
    smoke = await opencode_smoke(opencode_path(), "custom/claude-sonnet-4-5", str(project), real_env, timeout=45)
    assert smoke.status == "fail" and smoke.cause == "opencode_error", smoke
    assert smoke.data["exit_code"] == 0  # OpenCode exits 0: only the error event tells
    assert "custom/claude-sonnet-4-5 failed (auth)" in smoke.summary  # classified as a delegation is


# ---------------------------------------------------------------- the CLI


def _serve_in_thread(**kwargs) -> ReferenceGateway:
    return ReferenceGateway(**kwargs).start_in_thread()


@pytest.mark.opencode
def test_cli_json_and_text_exit_codes(project: Path, real_env: dict[str, str]) -> None:
    env = real_env
    gw = _serve_in_thread(api_key=KEY)
    try:
        configure(project, gw.base_url)
        ok = run_cli(["doctor", "--json"], env, project)
        assert ok.returncode == 0, ok.stderr
        data = json.loads(ok.stdout)
        assert data["schema_version"] == 1 and data["ok"] is True
        assert {c["id"] for c in data["checks"]} >= {"opencode", "config", "gateway.custom", "models.custom", "mcp"}
        assert set(data["checks"][0]) >= {
            "id",
            "title",
            "status",
            "summary",
            "detail",
            "fix",
            "cause",
            "duration_ms",
            "data",
        }
        gw.add_fault("403")
        text = run_cli(["doctor"], env, project)
        assert text.returncode == 1
        assert "✗ custom: gateway reachable" in text.stdout and "fix:" in text.stdout
        assert "Traceback" not in text.stderr
        for output in (ok.stdout, ok.stderr, text.stdout, text.stderr):
            assert_no_key(output)
    finally:
        gw.stop()


@pytest.fixture
def blackholed_port() -> Iterator[int]:
    """A listener whose accept queue is full and never drained: the kernel drops new SYNs, like a firewall."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in (*fillers, listener):
        sock.close()


async def test_dead_gateway_is_connect_timeout_within_bound(
    project: Path, env: dict[str, str], blackholed_port: int
) -> None:
    configure(project, f"http://127.0.0.1:{blackholed_port}/v1")
    began = time.perf_counter()
    report = await run_doctor(project, env)
    assert time.perf_counter() - began < VERDICT_BOUND_S
    check = report.check("gateway.custom")
    assert check.cause == "connect_timeout"
    assert "firewall" in check.summary and "reachable" in check.fix
    assert_honest(report, ["gateway.custom"])


# ---------------------------------------------------------------- OpenCode itself, with stand-ins


def fake_opencode(tmp_path: Path, body: str) -> Path:
    """A directory holding an `opencode` executable (a Python script) that does ``body``."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "opencode"
    exe.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    exe.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("body", "status", "cause"),
    [
        ("print('1.1.0')", "warn", "opencode_version_untested"),
        ("print('boom', file=sys.stderr); sys.exit(3)", "fail", "opencode_broken"),
    ],
)
async def test_opencode_versions(
    project: Path, env: dict[str, str], tmp_path: Path, body: str, status: str, cause: str
) -> None:
    bin_dir = fake_opencode(tmp_path, body)
    report = await run_doctor(project, {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"})
    check = report.check("opencode")
    assert (check.status, check.cause) == (status, cause)
    assert check.fix and "1.2.15" in check.fix


async def test_hung_opencode_is_bounded_and_killed(project: Path, env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = fake_opencode(tmp_path, "time.sleep(120)")
    began = time.perf_counter()
    report = await run_doctor(project, {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"})
    assert time.perf_counter() - began < VERDICT_BOUND_S + 1
    check = report.check("opencode")
    assert check.status == "warn" and check.cause == "opencode_slow"
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if str(bin_dir / "opencode") in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


# ---------------------------------------------------------------- where the key comes from


def write_config(project: Path, options: dict, **extra) -> None:
    provider = {"npm": "@ai-sdk/openai-compatible", "options": options, "models": {"claude-sonnet-4-5": {}}}
    (project / "opencode.json").write_text(json.dumps({"provider": {"custom": provider}, **extra}))


async def test_literal_key_is_used_and_never_shown(
    project: Path, bare_env: dict[str, str], gateway: ReferenceGateway
) -> None:
    write_config(project, {"baseURL": gateway.base_url, "apiKey": KEY})
    report = await run_doctor(project, bare_env)
    check = report.check("provider.custom.api_key")
    assert check.status == "ok" and check.summary == f"set, from the value written in {project / 'opencode.json'}"
    assert report.check("gateway.custom").status == "ok"
    assert_no_key(report)


async def test_key_from_opencode_auth_login(project: Path, bare_env: dict[str, str], gateway: ReferenceGateway) -> None:
    auth = Path(bare_env["XDG_DATA_HOME"]) / "opencode" / "auth.json"
    auth.parent.mkdir(parents=True)
    auth.write_text(json.dumps({"custom": {"type": "api", "key": KEY}}))
    write_config(project, {"baseURL": gateway.base_url})
    report = await run_doctor(project, bare_env)
    assert report.check("provider.custom.api_key").summary == "set, from `opencode auth login` (auth.json)"
    assert report.check("gateway.custom").status == "ok"
    assert gateway.requests[-1].bearer == "expected"
    assert_no_key(report)


async def test_undeclared_default_model_fails(project: Path, env: dict[str, str], gateway: ReferenceGateway) -> None:
    write_config(
        project, {"baseURL": gateway.base_url, "apiKey": "{env:CUSTOM_API_KEY}"}, model="custom/claude-sonet-4-5"
    )
    report = await run_doctor(project, env)
    check = report.check("models.custom")
    assert check.status == "fail" and check.cause == "default_model_undeclared"
    assert 'set "model" to custom/claude-sonnet-4-5' in check.fix


async def test_no_gateway_provider_is_a_warning(project: Path, env: dict[str, str]) -> None:
    (project / "opencode.json").write_text(json.dumps({"model": "anthropic/claude-sonnet-4-5"}))
    report = await run_doctor(project, env)
    check = report.check("gateway")
    assert check.status == "warn" and check.cause == "no_gateway_provider"
    assert not any(c.id.startswith("gateway.") for c in report.checks)


def test_cli_missing_project_dir_is_one_sentence(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_cli(["--dir", str(tmp_path / "nowhere"), "doctor"], env, tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"nexus-agents: The project directory {tmp_path / 'nowhere'} does not exist. Pass an existing directory with --dir."
    )
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- real TLS


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for localhost (and 127.0.0.1) that no trust store knows, and its key."""
    crypto = pytest.importorskip("cryptography")
    from datetime import datetime, timedelta
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    assert crypto
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def tls_server(self_signed: tuple[Path, Path]) -> TinyServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed)
    return TinyServer(v1_only, tls=context)


async def test_untrusted_certificate_names_the_ca_fix(
    project: Path, env: dict[str, str], self_signed: tuple[Path, Path]
) -> None:
    clean = {k: v for k, v in env.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS")}
    async with tls_server(self_signed) as server:
        configure(project, server.root + "/v1")
        report = await run_doctor(project, clean)
    check = report.check("gateway.custom")
    assert check.cause == "tls_error" and "not trusted" in check.summary
    assert "NODE_EXTRA_CA_CERTS" in check.fix
    assert_honest(report, ["gateway.custom"])


async def test_ca_from_node_extra_ca_certs_is_trusted_and_tls_is_timed(
    project: Path, env: dict[str, str], self_signed: tuple[Path, Path]
) -> None:
    trusted = {k: v for k, v in env.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    trusted["NODE_EXTRA_CA_CERTS"] = str(self_signed[0])
    async with tls_server(self_signed) as server:
        configure(project, server.root + "/v1")
        report = await run_doctor(project, trusted)
    check = report.check("gateway.custom")
    assert check.status == "ok", check
    timings = check.data["timings"]
    assert timings["dns_ms"] is not None and timings["tls_ms"] is not None and timings["connect_ms"] is not None
    assert timings["total_ms"] >= timings["tls_ms"]
    assert "DNS" in check.summary and "TLS" in check.summary


async def test_a_dead_proxy_is_named_as_the_proxy(
    project: Path, env: dict[str, str], gateway: ReferenceGateway
) -> None:
    port = closed_port()
    configure(project, gateway.base_url)
    proxied = {**env, "HTTP_PROXY": f"http://user:pw-secret@127.0.0.1:{port}", "NO_PROXY": "example.com"}
    report = await run_doctor(project, proxied)
    check = report.check("gateway.custom")
    assert check.cause == "connection_refused"
    assert f"through the proxy http://127.0.0.1:{port} from HTTP_PROXY" in check.summary
    assert "NO_PROXY" in check.fix
    assert "pw-secret" not in report.model_dump_json()
    bypassed = await run_doctor(project, {**proxied, "NO_PROXY": "127.0.0.1"})
    assert bypassed.check("gateway.custom").status == "ok"


async def test_config_check_names_the_winning_file_per_value(
    project: Path, env: dict[str, str], gateway: ReferenceGateway
) -> None:
    global_file = Path(env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json"
    global_file.parent.mkdir(parents=True)
    global_file.write_text(
        json.dumps(
            {
                "provider": {
                    "custom": {"options": {"apiKey": "{env:CUSTOM_API_KEY}", "baseURL": "http://127.0.0.1:9/v1"}}
                }
            }
        )
    )
    write_config(project, {"baseURL": gateway.base_url})
    report = await run_doctor(project, env)
    detail = report.check("config").detail
    assert f"global    {global_file}" in detail and f"project   {project / 'opencode.json'}" in detail
    assert f"baseURL from {project / 'opencode.json'}; apiKey from {global_file}" in detail
    assert report.check("provider.custom.base_url").summary == f"{gateway.base_url}, set in {project / 'opencode.json'}"
    assert report.check("gateway.custom").status == "ok"


async def test_opencode_that_cannot_start(project: Path, env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = fake_opencode(tmp_path, "")
    (bin_dir / "opencode").write_text("#!/nonexistent/interpreter\n")
    report = await run_doctor(project, {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"})
    check = report.check("opencode")
    assert check.status == "fail" and check.cause == "opencode_broken"
    assert "cannot be started" in check.summary


async def test_credentials_in_the_base_url_are_never_shown(
    project: Path, env: dict[str, str], gateway: ReferenceGateway
) -> None:
    password, query_key = "pw-" + secrets.token_hex(8), "qk" + secrets.token_hex(8)
    base_url = gateway.base_url.replace("http://", f"http://user:{password}@") + f"?api-key={query_key}"
    configure(project, base_url)
    report = await run_doctor(project, env)
    text = report.model_dump_json()
    assert password not in text and query_key not in text
    assert "user:[redacted]@" in report.check("provider.custom.base_url").summary


async def test_openai_sdk_on_a_gateway_warns_that_opencode_calls_responses(
    project: Path, env: dict[str, str], gateway: ReferenceGateway
) -> None:
    configure(project, gateway.base_url)
    config = json.loads((project / "opencode.json").read_text())
    config["provider"]["custom"]["npm"] = "@ai-sdk/openai"
    (project / "opencode.json").write_text(json.dumps(config))
    report = await run_doctor(project, env)
    check = report.check("provider.custom.base_url")
    assert check.status == "warn" and check.cause == "responses_api"
    assert f"{gateway.base_url}/responses" in check.summary
    assert "@ai-sdk/openai-compatible" in check.fix


@pytest.mark.parametrize(
    ("printed", "status"), [("1.18.33", "ok"), ("1.9.4", "ok"), ("1.19.0", "warn"), ("1.2.14", "warn")]
)
async def test_the_tested_releases_are_named_and_a_version_outside_them_warns(
    project: Path, env: dict[str, str], tmp_path: Path, printed: str, status: str
) -> None:
    bin_dir = fake_opencode(tmp_path, f"print({printed!r})")
    report = await run_doctor(project, {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"})
    check = report.check("opencode")
    assert check.status == status
    assert check.data["supported"] == "tested with 1.2.15 and 1.18.33"
    if status == "warn":
        assert check.cause == "opencode_version_untested"
        assert "1.2.15" in check.summary and "1.18.33" in check.summary and printed in check.summary
        assert "opencode-ai@1.2.15" in check.fix and "1.18.33" in check.fix
    else:
        assert "tested with 1.2.15 and 1.18.33" in check.summary
