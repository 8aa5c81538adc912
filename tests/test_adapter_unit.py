"""The adapter's pure parts: argv, variant allowlist, model-name shape, child env, error classification."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nexus_core.errors import NexusError
from nexus_core.opencode import locate
from nexus_core.opencode.attempt import (
    DEPTH_VAR,
    allowed_variant,
    build_argv,
    check_model_name,
    child_env,
    classify_error,
    find_opencode,
    native_opencode,
)
from nexus_core.opencode.classify import PROCESSOR_ERROR
from nexus_core.opencode.events import ErrorEvent, FailureClass


def test_argv_has_model_and_no_prompt() -> None:
    argv = build_argv("/bin/opencode", "custom/claude-opus-4-5", variant="high", thinking=True, workdir="/tmp/w")
    assert argv[:4] == ["/bin/opencode", "run", "--format", "json"]
    assert argv[argv.index("--model") + 1] == "custom/claude-opus-4-5"
    assert argv[argv.index("--variant") + 1] == "high"
    assert "--thinking" in argv
    assert argv[argv.index("--dir") + 1] == "/tmp/w"


@pytest.mark.parametrize("variant", ["high; rm -rf /", "HIGH", "low", " high", "--help", "$(reboot)", "max\n"])
def test_variant_outside_allowlist_is_dropped_with_a_debug_log(variant: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="nexus_core.opencode.argv")
    argv = build_argv("opencode", "custom/m", variant=variant)
    assert "--variant" not in argv
    assert not any(variant in arg for arg in argv)
    assert "dropped" in caplog.text


@pytest.mark.parametrize("variant", ["high", "max", "minimal"])
def test_allowlisted_variants_pass(variant: str) -> None:
    assert allowed_variant(variant) == variant
    assert allowed_variant(None) is None


@pytest.mark.parametrize("name", ["custom", "/model", "custom/", "-x/y", "a b/c", "custom/m;rm", "", "custom/--help"])
def test_model_name_must_be_provider_slash_model(name: str) -> None:
    with pytest.raises(NexusError, match="provider-id>/<model-key"):
        check_model_name(name)


def test_child_env_increments_depth_and_keeps_the_gateway_key() -> None:
    env = child_env({"PATH": "/bin", "CUSTOM_API_KEY": "sk-abc"})
    assert env["CUSTOM_API_KEY"] == "sk-abc" and env[DEPTH_VAR] == "1"
    assert child_env({DEPTH_VAR: "2"})[DEPTH_VAR] == "3"
    assert child_env({DEPTH_VAR: "nonsense"})[DEPTH_VAR] == "1"
    assert child_env({}, {"EXTRA": "1"})["EXTRA"] == "1"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ErrorEvent(name="APIError", message="Unauthorized", status_code=401), FailureClass.AUTH),
        (ErrorEvent(name="APIError", message="Forbidden", status_code=403), FailureClass.AUTH),
        (ErrorEvent(name="ProviderAuthError", message="no key"), FailureClass.AUTH),
        (ErrorEvent(name="APIError", message="Not Found", status_code=404), FailureClass.MODEL_NOT_FOUND),
        (ErrorEvent(name="UnknownError", message="Model not found: custom/nope."), FailureClass.MODEL_NOT_FOUND),
        (ErrorEvent(name="APIError", message="Bad Request", status_code=400), FailureClass.BAD_REQUEST),
        (ErrorEvent(name="ContextOverflowError", message="prompt is too long"), FailureClass.BAD_REQUEST),
        (ErrorEvent(name="APIError", message="Too Many Requests", status_code=429), FailureClass.RATE_LIMITED),
        (ErrorEvent(name="APIError", message="Bad Gateway", status_code=502), FailureClass.GATEWAY_ERROR),
        (
            ErrorEvent(
                name="UnknownError", message="Error: Unable to connect. Is the computer able to access the url?"
            ),
            FailureClass.CONNECTION,
        ),
        (
            ErrorEvent(name="UnknownError", message="Error: Was there a typo in the url or port?"),
            FailureClass.CONNECTION,
        ),
        (ErrorEvent(name="ProviderInitError", message="init"), FailureClass.CONFIG_INVALID),
        (ErrorEvent(name="MessageAbortedError", message="aborted"), FailureClass.CANCELLED),
        (ErrorEvent(name="UnknownError", message="something odd"), FailureClass.FAILED),
    ],
)
def test_error_events_are_classified(event: ErrorEvent, expected: FailureClass) -> None:
    assert classify_error(event)[0] is expected


def test_processor_error_log_line_is_recognised() -> None:
    line = (
        "ERROR 2026-11-25T03:22:28 +2ms service=session.processor error=Internal Server Error "
        'stack="Error: x\\n  at y" process'
    )
    match = PROCESSOR_ERROR.match(line)
    assert match and match.group("error") == "Internal Server Error"
    assert (
        PROCESSOR_ERROR.match("ERROR 2026-11-25T03:22:28 +1ms service=session.prompt error=x failed to generate title")
        is None
    )


def _fake_launcher(root: Path, with_binary: bool = True) -> Path:
    bin_dir = root / "node_modules" / "opencode-ai" / "bin"
    bin_dir.mkdir(parents=True)
    launcher = bin_dir / "opencode"
    launcher.write_text("#!/usr/bin/env node\nrequire('child_process')\n")
    launcher.chmod(0o755)
    if with_binary:
        binary = bin_dir / ".opencode"
        binary.write_bytes(b"\x7fELF")
        binary.chmod(0o755)
    link_dir = root / "node_modules" / ".bin"
    link_dir.mkdir()
    (link_dir / "opencode").symlink_to(launcher)
    return link_dir / "opencode"


def test_the_npm_launcher_is_skipped_for_the_binary_it_would_run(tmp_path: Path) -> None:
    link = _fake_launcher(tmp_path)
    binary = str(tmp_path / "node_modules" / "opencode-ai" / "bin" / ".opencode")
    assert native_opencode(str(link), {}) == binary
    assert native_opencode(str(link), {"OPENCODE_BIN_PATH": "/opt/oc"}) == "/opt/oc"
    assert find_opencode({"PATH": str(link.parent)}) == binary
    # A launcher named by NEXUS_OPENCODE is resolved too: ending the process must end OpenCode itself.
    assert find_opencode({"PATH": str(tmp_path / "nowhere"), "NEXUS_OPENCODE": str(link)}) == binary


def test_other_executables_are_run_as_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locate, "_CHECKOUT", tmp_path)  # no .tools fallback from the checkout
    link = _fake_launcher(tmp_path, with_binary=False)
    assert native_opencode(str(link), {}) == str(link)
    script = tmp_path / "opencode"
    script.write_text("#!/bin/sh\nexec true\n")
    script.chmod(0o755)
    assert native_opencode(str(script), {}) == str(script)
    assert find_opencode({"PATH": str(tmp_path / "nowhere")}) is None
