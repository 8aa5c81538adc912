"""``nexus-agents gateway --script FILE``: scripted turns from a file, as the container's e2e uses them."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
from pathlib import Path

import httpx

from conftest import run_cli

SCRIPT = [
    {
        "match": "CALL-THE-TOOL",
        "turns": [
            {"tool_calls": [{"name": "nexus-agents_list_experts", "arguments": {"verbose": True}}]},
            {"text": "All done."},
        ],
    }
]


def _start_gateway(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], dict]:
    exe = shutil.which("nexus-agents", path=env.get("PATH"))
    assert exe
    process = subprocess.Popen(
        [exe, "gateway", "--port", "0", "--json", "--quiet", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=30):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            raise AssertionError("the gateway printed nothing within 30 s")
    return process, json.loads(process.stdout.readline())


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_script_file_makes_the_model_call_a_tool_then_answer(hermetic_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "script.jsonc"
    script.write_text("// the e2e's kind of script\n" + json.dumps(SCRIPT))
    process, facts = _start_gateway(["--script", str(script), "--model", "m1"], hermetic_env, tmp_path)
    try:
        assert facts["scripts"] == ["CALL-THE-TOOL"]
        url = facts["base_url"] + "/chat/completions"
        first = httpx.post(
            url, json={"model": "m1", "messages": [{"role": "user", "content": "please CALL-THE-TOOL now"}]}, timeout=10
        ).json()
        call = first["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "nexus-agents_list_experts"
        assert json.loads(call["function"]["arguments"]) == {"verbose": True}
        follow_up = httpx.post(
            url,
            json={
                "model": "m1",
                "messages": [
                    {"role": "user", "content": "please CALL-THE-TOOL now"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": call["id"], "content": '{"experts": []}'},
                ],
            },
            timeout=10,
        ).json()
        assert follow_up["choices"][0]["message"]["content"] == "All done."
        other = httpx.post(
            url, json={"model": "m1", "messages": [{"role": "user", "content": "hello"}]}, timeout=10
        ).json()
        assert "tool_calls" not in other["choices"][0]["message"]
    finally:
        assert _stop(process) == 0


def test_bad_script_file_is_one_sentence_with_a_fix(hermetic_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"match": "x", "turns": []}]))
    done = run_cli(["gateway", "--script", str(script)], hermetic_env, tmp_path, timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(script) in done.stderr and "0.turns" in done.stderr and '[{"match"' in done.stderr


def test_unreadable_or_broken_script_file_names_the_file(hermetic_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    done = run_cli(["gateway", "--script", str(missing)], hermetic_env, tmp_path, timeout=30)
    assert done.returncode == 2 and f"cannot read script file {missing}" in done.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('[{"match": "x",]')
    done = run_cli(["gateway", "--script", str(broken)], hermetic_env, tmp_path, timeout=30)
    assert done.returncode == 2 and f"script file {broken} is not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr
