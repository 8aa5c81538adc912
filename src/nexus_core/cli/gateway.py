"""``nexus-agents gateway``: run the loopback reference gateway until Ctrl-C.

For checking a set-up without a real gateway (point OpenCode at the printed URL), for the
dashboard's demo, and for rehearsing failures with ``--fault``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from nexus_core.config import jsonc
from nexus_core.errors import NexusError, first_validation_problem
from nexus_core.gateway import (
    DEFAULT_MODELS,
    RecordedRequest,
    ReferenceGateway,
    Script,
    opencode_config,
    parse_fault_spec,
)

_SCRIPTS = TypeAdapter(list[Script])
_MAX_SCRIPT_BYTES = 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gateway",
        help="run the loopback reference gateway (OpenAI-compatible, with fault injection)",
        description="Serve an OpenAI-compatible gateway on 127.0.0.1 until Ctrl-C. It answers every chat "
        "request with 'Reply to: <the start of your prompt>'.",
    )
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free one)")
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="M",
        help=f"a model id to serve (repeatable; default: {', '.join(DEFAULT_MODELS)})",
    )
    p.add_argument(
        "--fault",
        action="append",
        dest="faults",
        default=[],
        metavar="SPEC",
        help="inject a fault, KIND[=VALUE][,model=M][,path=P][,times=N]; KIND: latency=S, 401, 403, 404, 429, "
        "500, 502 (or status=CODE), drop, cut, malformed-sse, html, silent, bad-models (repeatable)",
    )
    p.add_argument(
        "--script",
        action="append",
        dest="script_files",
        default=[],
        metavar="FILE",
        help='scripted answers from a JSON(C) file: a list of {"match": TEXT, "turns": [{"text": ...} or '
        '{"tool_calls": [{"name": TOOL, "arguments": {...}}]}], "times": N} (repeatable)',
    )
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="require 'Authorization: Bearer $VAR' (the key is read from VAR, never printed)",
    )
    p.add_argument("--print-config", action="store_true", help="also print an opencode.json for this gateway")
    p.add_argument("--quiet", action="store_true", help="do not log each request on stderr")
    p.add_argument("--json", action="store_true", help="print the start-up facts as one JSON line")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise NexusError(f"--port {args.port} is not a port", "Use 1-65535, or 0 for a free one")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key:
            raise NexusError(
                f"{args.api_key_env} is not set, so the gateway has no key to require",
                f"export {args.api_key_env}=<a test key>, or drop --api-key-env to serve without a key",
            )
    faults = [parse_fault_spec(spec) for spec in args.faults]
    scripts = [script for path in args.script_files for script in load_scripts(Path(path))]
    models = tuple(dict.fromkeys(args.models)) if args.models else DEFAULT_MODELS
    gateway = ReferenceGateway(
        port=args.port,
        models=models,
        api_key=api_key,
        faults=faults,
        on_request=None if args.quiet else _log_request,
    )
    for script in scripts:
        gateway.script(script.match, turns=script.turns, times=script.times)
    return asyncio.run(_serve(gateway, args, scripts))


def load_scripts(path: Path) -> list[Script]:
    """The scripts in a JSON(C) file: a list of :class:`~nexus_core.gateway.Script` objects."""
    try:
        if path.stat().st_size > _MAX_SCRIPT_BYTES:
            raise NexusError(f"script file {path} is larger than 1 MiB", "Keep scripts short")
        data = jsonc.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NexusError(f"cannot read script file {path}: {exc.strerror or exc}", "Check the path") from None
    except ValueError as exc:
        raise NexusError(f"script file {path} is not valid JSON: {exc}", "Fix the file") from None
    try:
        return _SCRIPTS.validate_python(data)
    except ValidationError as exc:
        raise NexusError(
            f"script file {path}: {first_validation_problem(exc, top='the top level')}",
            'Write a list like [{"match": "hello", "turns": [{"text": "Hi"}]}]',
        ) from None


async def _serve(gateway: ReferenceGateway, args: argparse.Namespace, scripts: list[Script]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with gateway:
        config = opencode_config(gateway.base_url, api_key_env=args.api_key_env, models=gateway.models)
        if args.json:
            facts = {
                "base_url": gateway.base_url,
                "port": gateway.port,
                "models": list(gateway.models),
                "faults": [f.model_dump(mode="json", exclude_defaults=True) for f in gateway.faults],
                "scripts": [script.match for script in scripts],
                "api_key_env": args.api_key_env,
            }
            if args.print_config:
                facts["opencode_config"] = config
            print(json.dumps(facts), flush=True)
        else:
            print(f"Reference gateway listening on {gateway.base_url}")
            print(f"  models: {', '.join(gateway.models)}")
            if args.api_key_env:
                print(f"  key required: set, from {{env:{args.api_key_env}}}")
            for fault in gateway.faults:
                print(f"  fault: {fault.describe()}")
            for script in scripts:
                print(f"  script: prompts containing {script.match!r} get {len(script.turns)} scripted turn(s)")
            if args.print_config:
                print("opencode.json for this gateway:")
                print(json.dumps(config, indent=2))
            print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    if not args.json:
        print("Gateway stopped.", flush=True)
    return 0


def _log_request(record: RecordedRequest) -> None:
    model = f" {record.model}" if record.model else ""
    print(f"{record.method} {record.path}{model} ({record.kind}) -> {record.outcome}", file=sys.stderr, flush=True)
