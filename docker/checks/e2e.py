"""The container's end-to-end test: a real ``opencode run`` whose model calls a nexus MCP tool.

Runs inside the image (``docker compose -f docker-compose.opencode.yml run --rm e2e``). It starts
the reference gateway (``nexus-agents gateway``) on loopback with a script: the model's first turn
calls ``nexus-agents_list_experts``; its second turn (after OpenCode ran the tool through the nexus
MCP server) quotes the tool's result. Then it runs ``opencode run --format json`` against that
gateway, through the image's own config, and checks the events. No real model, key or network.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SERVER_NAME = "nexus-agents"
TOOL = "list_experts"
OPENCODE_TOOL = f"{SERVER_NAME}_{TOOL}"
MARKER = "NEXUS-CONTAINER-E2E"
GATEWAY_START_SECONDS = 30.0
RUN_SECONDS = 240.0
MAX_OUTPUT_BYTES = 8 * 1024 * 1024
# A throwaway key: the gateway requires it, which proves OpenCode sends {env:CUSTOM_API_KEY}.
E2E_KEY = "e2e-key-not-a-secret"


class CheckFailed(Exception):
    """The end-to-end test's one-sentence reason for failing."""


def stop(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """End a process and its whole group (OpenCode's launcher spawns the real binary)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=grace)


def start_gateway(model: str, script_file: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``nexus-agents gateway`` on a free loopback port; returns it and its base URL."""
    argv = [
        SERVER_NAME,
        "gateway",
        "--port",
        "0",
        "--json",
        "--quiet",
        "--model",
        model,
        "--script",
        str(script_file),
        "--api-key-env",
        "CUSTOM_API_KEY",
    ]
    gateway = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert gateway.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(gateway.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=GATEWAY_START_SECONDS):
            stop(gateway)
            raise CheckFailed(f"`{' '.join(argv[:2])}` printed nothing within {GATEWAY_START_SECONDS:.0f} s")
    line = gateway.stdout.readline()
    try:
        facts = json.loads(line)
    except ValueError:
        stop(gateway)
        error = gateway.stderr.read(2000).strip() if gateway.stderr else ""
        raise CheckFailed(f"the gateway did not start: {error or line.strip() or 'no output'}") from None
    return gateway, facts["base_url"]


def run_opencode(model: str, prompt: str, env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """``opencode run --format json`` with the prompt on stdin; returns its events."""
    argv = ["opencode", "run", "--format", "json", "--model", model]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=out, stderr=err, start_new_session=True
        )
        assert process.stdin is not None
        process.stdin.write(prompt.encode())
        process.stdin.close()
        try:
            process.wait(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            stop(process)
            raise CheckFailed(f"opencode run did not finish within {RUN_SECONDS:.0f} s") from None
        out.seek(0)
        lines = out.read(MAX_OUTPUT_BYTES).decode("utf-8", "replace").splitlines()
        err.seek(0)
        stderr = err.read(4000).decode("utf-8", "replace").strip()
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    if not events:
        raise CheckFailed(f"opencode run (exit {process.returncode}) printed no events: {stderr[-500:] or 'no output'}")
    return events


def check_events(events: list[dict[str, Any]]) -> list[str]:
    """What the run proved; raises when a step is missing."""
    errors = [e for e in events if e.get("type") == "error"]
    if errors:
        raise CheckFailed(f"opencode reported an error: {json.dumps(errors[0].get('error'))[:300]}")
    uses = [e["part"] for e in events if e.get("type") == "tool_use" and e.get("part", {}).get("tool") == OPENCODE_TOOL]
    if not uses:
        tools = sorted({e.get("part", {}).get("tool", "?") for e in events if e.get("type") == "tool_use"})
        raise CheckFailed(f"the model's call of {OPENCODE_TOOL} was not run (tool calls seen: {tools or 'none'})")
    state = uses[0].get("state", {})
    output = str(state.get("output", ""))
    if state.get("status") != "completed" or '"experts"' not in output:
        raise CheckFailed(
            f"{OPENCODE_TOOL} did not complete with the expert list: {state.get('status')}: {output[:300]}"
        )
    texts = "".join(e["part"].get("text", "") for e in events if e.get("type") == "text")
    if f"Tool {OPENCODE_TOOL} returned:" not in texts:
        raise CheckFailed(f"the model's final answer does not carry the tool result: {texts[:300]!r}")
    finishes = [e["part"].get("reason") for e in events if e.get("type") == "step_finish"]
    if not finishes or finishes[-1] != "stop":
        raise CheckFailed(f"the run did not end with step_finish reason 'stop' (reasons: {finishes})")
    experts = json.loads(output).get("experts", []) if output.startswith("{") else []
    return [
        f"{OPENCODE_TOOL} ran through the nexus MCP server ({len(experts) or 'some'} experts)",
        "the tool result went back to the model, which answered with it",
        f"the run finished with reason 'stop' after {len(finishes)} steps",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="custom/claude-sonnet-4-5", help="the custom/<model> OpenCode runs")
    args = parser.parse_args(argv)
    provider, _, model_id = args.model.partition("/")
    if provider != "custom" or not model_id:
        parser.error("--model must be custom/<model>")
    with tempfile.TemporaryDirectory(prefix="nexus-e2e-") as tmp:
        work = Path(tmp)
        script_file = work / "script.json"
        script_file.write_text(
            json.dumps(
                [
                    {
                        "match": MARKER,
                        "turns": [{"tool_calls": [{"name": OPENCODE_TOOL, "arguments": {}}]}],
                    }
                ]
            ),
            encoding="utf-8",
        )
        project = work / "project"
        project.mkdir()
        env = dict(os.environ, CUSTOM_API_KEY=E2E_KEY, NO_COLOR="1", OPENCODE_DISABLE_MODELS_FETCH="1")
        started = time.monotonic()
        try:
            gateway, base_url = start_gateway(model_id, script_file, env)
        except CheckFailed as exc:
            print(f"FAIL  gateway: {exc}", flush=True)
            return 1
        print(f"ok    gateway: nexus-agents gateway listening on {base_url}, key required", flush=True)
        try:
            env["CUSTOM_API_BASE_URL"] = base_url
            prompt = f"{MARKER}: list the nexus experts with the {SERVER_NAME} {TOOL} tool."
            events = run_opencode(args.model, prompt, env, project)
            for line in check_events(events):
                print(f"ok    {line}", flush=True)
        except CheckFailed as exc:
            print(f"FAIL  opencode run --model {args.model}: {exc}", flush=True)
            return 1
        finally:
            stop(gateway)
    print(f"e2e: passed in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
