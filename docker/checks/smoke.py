"""The container's key-less smoke test: is OpenCode + nexus installed and wired up?

Runs inside the image (``docker compose -f docker-compose.opencode.yml run --rm smoke-test``).
Each check prints ``ok`` or ``FAIL`` with the reason; the exit code is 1 when any check fails.
Needs no API key and no network: every check talks to local processes only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SERVER_NAME = "nexus-agents"
CUSTOM_MODELS = ("custom/claude-opus-4-5", "custom/claude-sonnet-4-5")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TIMEOUT = 90.0


class CheckFailed(Exception):
    """A check's one-sentence reason for failing."""


def run(argv: list[str], timeout: float = _TIMEOUT) -> str:
    """Run ``argv`` (no shell, no stdin) and return its stdout without ANSI colours."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CheckFailed(f"{argv[0]} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CheckFailed(f"`{' '.join(argv)}` exited with {done.returncode}: {' | '.join(tail)}")
    return _ANSI.sub("", done.stdout)


def global_config_file() -> Path:
    """The OpenCode global config file (XDG_CONFIG_HOME honoured, .jsonc preferred as OpenCode does)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "opencode"
    for name in ("opencode.jsonc", "opencode.json"):
        if (base / name).is_file():
            return base / name
    raise CheckFailed(f"no opencode.json or opencode.jsonc in {base}")


def check_opencode_version(pinned: str) -> str:
    found = run(["opencode", "--version"]).strip()
    if found != pinned:
        raise CheckFailed(f"opencode --version says {found!r}, the pin is {pinned!r}")
    return f"opencode --version is {found}"


def check_nexus_help() -> str:
    out = run([SERVER_NAME, "--help"])
    if f"usage: {SERVER_NAME}" not in out:
        raise CheckFailed(f"`{SERVER_NAME} --help` printed no usage line")
    return f"{SERVER_NAME} --help answers"


def check_config_mentions_server() -> str:
    path = global_config_file()
    if SERVER_NAME not in path.read_text(encoding="utf-8"):
        raise CheckFailed(f"{path} does not mention {SERVER_NAME}")
    merged = json.loads(run(["opencode", "debug", "config"]))
    entry = (merged.get("mcp") or {}).get(SERVER_NAME)
    if not entry or entry.get("type") != "local" or entry.get("enabled") is False:
        raise CheckFailed(f"OpenCode's merged config has no enabled local mcp.{SERVER_NAME}: {entry!r}")
    program = Path(entry["command"][0])
    if not program.is_absolute() or not os.access(program, os.X_OK):
        raise CheckFailed(
            f"mcp.{SERVER_NAME} runs {program}, not this image's absolute server command; "
            "the build must run `nexus-agents setup --global --force`"
        )
    return f"{path} has mcp.{SERVER_NAME}: {' '.join(entry['command'])}"


def check_mcp_connected() -> str:
    out = run(["opencode", "mcp", "list"])
    for line in out.splitlines():
        if SERVER_NAME in line:
            if "connected" in line.split(SERVER_NAME, 1)[1]:
                return f"opencode mcp list: {SERVER_NAME} connected"
            raise CheckFailed(f"opencode mcp list: {line.strip()}")
    raise CheckFailed(f"opencode mcp list does not list {SERVER_NAME}")


def check_custom_provider() -> str:
    listed = set(run(["opencode", "models", "custom"]).split())
    missing = [m for m in CUSTOM_MODELS if m not in listed]
    if missing:
        raise CheckFailed(f"opencode models custom lacks {', '.join(missing)}")
    options = json.loads(global_config_file().read_text(encoding="utf-8"))["provider"]["custom"]["options"]
    wanted = {"baseURL": "{env:CUSTOM_API_BASE_URL}", "apiKey": "{env:CUSTOM_API_KEY}"}
    wrong = [key for key, value in wanted.items() if options.get(key) != value]
    if wrong:
        raise CheckFailed(
            f"the custom provider's {', '.join(wrong)} must come from the environment ({', '.join(wanted.values())})"
        )
    return f"custom provider present with {', '.join(CUSTOM_MODELS)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opencode-version", required=True, help="the pinned OpenCode version")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["provider"],
        help="leave a check out (the sandbox template has no custom provider)",
    )
    args = parser.parse_args(argv)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("OpenCode version", lambda: check_opencode_version(args.opencode_version)),
        ("nexus-agents CLI", check_nexus_help),
        ("MCP entry in config", check_config_mentions_server),
        ("MCP server connects", check_mcp_connected),
    ]
    if "provider" not in args.skip:
        checks.append(("custom provider", check_custom_provider))
    failed = 0
    for title, check in checks:
        try:
            print(f"ok    {title}: {check()}", flush=True)
        except CheckFailed as exc:
            failed += 1
            print(f"FAIL  {title}: {exc}", flush=True)
    print(f"smoke-test: {len(checks) - failed}/{len(checks)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
