#!/usr/bin/env python3
"""The Python SDK (PyPI `mcp` 2.x) as a client of an MCP Streamable HTTP endpoint.

Run by runtime/tests/clients.rs with the venv of `.ci/install-peers`:

    target/peers/venv/bin/python runtime/tests/clients/py_client.py URL MODE CALLS_JSON

    MODE: auto | legacy | 2026-07-28   (the `mode=` of mcp.Client)
    CALLS_JSON: a JSON list of [tool, arguments] pairs, called in order after tools/list,
                e.g. '[["ref__echo", {"message": "hi"}]]'

In one client session it lists the tools, then calls each tool. Prints one JSON object on
stdout and exits 0:
    {"mode": ..., "protocol_version": ..., "server_info": ... | null, "tools": [names...],
     "calls": [{"name": ..., "result": <CallToolResult as JSON>}, ...]}
On any failure prints {"mode": ..., "error": "...", "error_type": "..."} (plus "code" and
"data" for a JSON-RPC error) and exits 1; bad usage exits 2. The whole run is bounded (30 s).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mcp import Client
from mcp.shared.exceptions import MCPError

MODES = ("auto", "legacy", "2026-07-28")


def _dump(model: Any) -> Any:
    if model is None:
        return None
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run(url: str, mode: str, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    async with Client(url, mode=mode, read_timeout_seconds=10) as client:
        tools = await client.list_tools()
        results = []
        for name, args in calls:
            result = await client.call_tool(name, args)
            results.append({"name": name, "result": _dump(result)})
        return {
            "mode": mode,
            "protocol_version": client.protocol_version,
            "server_info": _dump(client.server_info),
            "tools": [t.name for t in tools.tools],
            "calls": results,
        }


def _leaf(exc: BaseException) -> BaseException:
    # anyio task groups wrap failures in ExceptionGroups; report the first real cause.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _parse_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    calls = json.loads(text)
    if not isinstance(calls, list) or not all(
        isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], dict)
        for c in calls
    ):
        raise ValueError("CALLS_JSON must be a list of [tool, {arguments}] pairs")
    return [(c[0], c[1]) for c in calls]


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[2] not in MODES:
        print(__doc__, file=sys.stderr)
        return 2
    url, mode = argv[1], argv[2]
    try:
        calls = _parse_calls(argv[3])
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        print(f"bad CALLS_JSON: {e}", file=sys.stderr)
        return 2
    try:
        out = asyncio.run(asyncio.wait_for(run(url, mode, calls), timeout=30))
    except BaseException as e:  # noqa: BLE001 - report every failure as JSON
        if isinstance(e, KeyboardInterrupt):
            raise
        leaf = _leaf(e)
        err: dict[str, Any] = {"mode": mode, "error": str(leaf) or repr(leaf), "error_type": type(leaf).__name__}
        if isinstance(leaf, MCPError):
            err["code"] = leaf.error.code
            err["data"] = leaf.error.data
        print(json.dumps(err))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
