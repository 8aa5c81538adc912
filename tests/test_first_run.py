"""OpenCode's first run in a fresh data directory migrates its database; runs beside it must not race it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from nexus_core.opencode.attempt import AttemptSpec, run_attempt

# Like OpenCode: a run that finds no database spends a moment starting, then migrates; a second
# run migrating at the same time fails (OpenCode's losers do not always say "database is locked").
STAND_IN = """#!{python}
import json, os, sys, time
sys.stdin.read()
db = os.path.join(os.environ["XDG_DATA_HOME"], "opencode", "opencode.db")
if not os.path.exists(db):
    time.sleep(0.3)
    os.makedirs(os.path.dirname(db), exist_ok=True)
    try:
        os.close(os.open(db + ".migrating", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        sys.stderr.write("Error: UNIQUE constraint failed: project.id\\n")
        sys.exit(1)
    open(db, "w").close()
    time.sleep(0.3)
for kind, part in (("step_start", {{"type": "step-start"}}), ("text", {{"type": "text", "text": "ok"}}),
                   ("step_finish", {{"type": "step-finish", "reason": "stop", "tokens": {{"input": 1, "output": 1}}}})):
    print(json.dumps({{"type": kind, "timestamp": 0, "sessionID": "s", "part": part}}), flush=True)
"""


async def test_concurrent_first_runs_of_a_fresh_data_dir_do_not_race(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    opencode = tmp_path / "opencode"
    opencode.write_text(STAND_IN.format(python=sys.executable))
    opencode.chmod(0o755)
    spec = AttemptSpec(
        cli_model_name="custom/m",
        prompt="hi",
        env=hermetic_env,
        opencode=str(opencode),
        timeout_s=30,
        stats_interval_s=None,
        workdir=tmp_path,
    )
    results = await asyncio.gather(*(run_attempt(spec) for _ in range(4)))
    assert [r.outcome.failure for r in results] == [None] * 4, [r.outcome.sentence() for r in results]
    assert [r.text for r in results] == ["ok"] * 4
