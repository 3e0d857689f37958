#!/usr/bin/env python3
"""Drive `<server> mcp serve` over stdio with the official MCP Python SDK.

Usage (run with the venv python printed by tests/mcp/setup.sh):

    drive.py --server PATH --root DIR [--timeout S] [--trace] SCENARIO ARGS...
    drive.py --server PATH --root DIR --http URL [--token T] SCENARIO ARGS...

With --http the driver connects to an already running `lily mcp serve
--http` (streamable HTTP, `Authorization: Bearer T`) instead of spawning one.

The server runs as `PATH mcp serve`, cwd=DIR, env = this environment plus
LILY_ROOT=DIR. Exactly one JSON object is printed on stdout (one line);
SDK logs, server stderr and --trace output go to stderr. Exit code is 0
unless the driver itself is broken (bad usage exits 2). Protocol-level
failures (JSON-RPC errors, timeouts, server exiting, client-side output
schema validation failures) become {"error": "..."} -- at the top level,
or inside one item of "results" for calls/sequence.

Scenarios and output shapes:
  list
      {"server_info": {"name", "version"}, "protocol_version": str,
       "tools": [{"name", "description", "inputSchema", "outputSchema"}...]}
  call TOOL JSON_ARGS
      {"isError": bool, "content": [{"type": "text", "text": ...}...],
       "structuredContent": obj|null,
       "progress": [{"progress", "total", "message"}...]}
      (a progress callback is always passed, so the request carries
      params._meta.progressToken = the JSON-RPC request id)
  calls TOOL JSON_ARGS N        N concurrent calls in one session
      {"results": [{"isError", "structuredContent"} | {"error"}...],
       "seconds": wall_time}
  sequence JSON_ARRAY           [{"tool": ..., "arguments": {...}}...], in order
      {"results": [{"isError", "content", "structuredContent"} | {"error"}...]}
  cancel TOOL JSON_ARGS AFTER_S
      sends notifications/cancelled {"requestId": id, "reason": ...} after
      AFTER_S seconds, waits 2 s, then tools/list in the same session:
      {"cancelled": bool (false if the call had already finished),
       "request_id": id, "tools_after": n}
  bench TOOL JSON_ARGS N        N sequential calls in one session
      {"seconds": [round_trip_seconds...]}
"""
import argparse
import asyncio
import json
import logging
import os
import sys
import time
from datetime import timedelta

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

TRACE = False


def log(*a):
    print("[drive]", *a, file=sys.stderr, flush=True)


def dump(model):
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def errtext(e):
    """Flatten (nested) exception groups into one readable message."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(errtext(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


class Tap:
    """Wraps the client->server stream: records JSON-RPC ids of tools/call
    requests (the SDK does not expose them) and optionally traces traffic."""

    def __init__(self, inner):
        self.inner, self.call_ids = inner, []

    async def send(self, msg):
        root = msg.message.root
        if isinstance(root, types.JSONRPCRequest) and root.method == "tools/call":
            self.call_ids.append(root.id)
        if TRACE:
            log(">>", json.dumps(dump(msg.message)))
        await self.inner.send(msg)

    async def __aenter__(self):
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self.inner.__aexit__(*exc)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def trace_incoming(msg):
    if TRACE and not isinstance(msg, Exception):
        log("<<", type(msg).__name__, json.dumps(dump(msg))[:2000])


def result_dict(r, keys=("isError", "content", "structuredContent")):
    out = {}
    if "isError" in keys:
        out["isError"] = bool(r.isError)
    if "content" in keys:
        out["content"] = [dump(c) for c in r.content]
    if "structuredContent" in keys:
        out["structuredContent"] = r.structuredContent
    return out


async def call(session, tool, arguments, keys, progress=None):
    async def on_progress(p, total, message):
        if progress is not None:
            progress.append({"progress": p, "total": total, "message": message})

    try:
        r = await session.call_tool(tool, arguments, progress_callback=on_progress)
    except Exception as e:  # McpError (JSON-RPC error / timeout), RuntimeError (schema)
        return {"error": errtext(e)}
    return result_dict(r, keys)


def load_json(text):
    """A JSON argument, or `@FILE` to read it from a file (for large ones)."""
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            return json.load(f)
    return json.loads(text)


def check_args(a):
    """Validate scenario arguments before starting the server (exit 2 if bad)."""
    s, args = a.scenario, a.args
    want = {"list": 0, "sequence": 1, "call": 2}.get(s, 3)
    if len(args) != want:
        raise SystemExit(f"{s}: expected {want} arguments, got {len(args)}")
    try:
        if s == "sequence":
            a.steps = load_json(args[0])
            assert isinstance(a.steps, list) and all("tool" in st for st in a.steps)
        elif s != "list":
            a.tool, a.arguments = args[0], load_json(args[1])
            assert isinstance(a.arguments, dict)
            if want == 3:
                a.n = float(args[2]) if s == "cancel" else int(args[2])
    except (ValueError, AssertionError, TypeError) as e:
        raise SystemExit(f"{s}: bad arguments {args!r}: {errtext(e)}")
    count = a.n if s == "bench" else len(a.steps) if s == "sequence" else 1
    a.deadline = a.timeout * max(count, 1) + 60 + (a.n if s == "cancel" else 0)


async def scenario(a, session, tap, init):
    s = a.scenario
    if s == "list":
        tools, cursor = [], None
        while True:
            page = await session.list_tools(cursor=cursor)
            tools += [dump(t) for t in page.tools]
            cursor = page.nextCursor
            if not cursor:
                break
        keep = ("name", "description", "inputSchema", "outputSchema")
        return {"server_info": {"name": init.serverInfo.name, "version": init.serverInfo.version},
                "protocol_version": init.protocolVersion,
                "tools": [{k: t.get(k) for k in keep} for t in tools]}
    if s == "sequence":
        return {"results": [await call(session, st["tool"], st.get("arguments", {}),
                                       ("isError", "content", "structuredContent"))
                            for st in a.steps]}
    tool, arguments = a.tool, a.arguments
    if s == "call":
        progress = []
        out = await call(session, tool, arguments,
                         ("isError", "content", "structuredContent"), progress)
        return {**out, "progress": progress}
    if s == "calls":
        t0 = time.monotonic()
        results = await asyncio.gather(*[call(session, tool, arguments, ("isError", "structuredContent"))
                                         for _ in range(a.n)])
        return {"results": list(results), "seconds": time.monotonic() - t0}
    if s == "bench":
        secs = []
        for _ in range(a.n):
            t0 = time.monotonic()
            r = await call(session, tool, arguments, ("isError",))
            secs.append(time.monotonic() - t0)
            if "error" in r:
                return {"error": r["error"], "seconds": secs}
        return {"seconds": secs}
    if s == "cancel":
        n_before = len(tap.call_ids)
        task = asyncio.create_task(session.call_tool(tool, arguments))
        await asyncio.sleep(a.n)
        if len(tap.call_ids) == n_before:
            raise RuntimeError("tools/call request was never sent")
        req_id = tap.call_ids[-1]
        cancelled = not task.done()
        if cancelled:
            # The SDK (1.x) does not notify the server when the awaiting task is
            # cancelled, so send notifications/cancelled explicitly, then stop waiting.
            await session.send_notification(types.ClientNotification(types.CancelledNotification(
                params=types.CancelledNotificationParams(requestId=req_id, reason="cancelled by drive.py"))))
            task.cancel()
        try:
            await task
        except BaseException as e:  # CancelledError, or the call's own error
            if not cancelled:
                log("call finished before cancel with", errtext(e))
        await asyncio.sleep(2)
        tools = await session.list_tools()
        return {"cancelled": cancelled, "request_id": req_id, "tools_after": len(tools.tools)}
    raise AssertionError(s)


async def run(a):
    if a.http:
        # An already running `lily mcp serve --http`: streamable HTTP with
        # the bearer token (or none, to see the refusal).
        from mcp.client.streamable_http import streamablehttp_client
        headers = {"Authorization": f"Bearer {a.token}"} if a.token else {}
        async with streamablehttp_client(a.http, headers=headers, timeout=a.timeout) as (read, write, _):
            return await session_on(a, read, write)
    params = StdioServerParameters(command=a.server, args=["mcp", "serve"], cwd=a.root,
                                   env={**os.environ, "LILY_ROOT": a.root})
    async with stdio_client(params, errlog=sys.stderr) as (read, write):
        return await session_on(a, read, write)


async def session_on(a, read, write):
    """Initialize a session on a transport's streams and run the scenario."""
    tap = Tap(write)
    async with ClientSession(read, tap, read_timeout_seconds=timedelta(seconds=a.timeout),
                             message_handler=trace_incoming) as session:
        init = await session.initialize()
        log("initialized:", init.serverInfo.name, init.serverInfo.version, init.protocolVersion)
        return await scenario(a, session, tap, init)

def main():
    global TRACE
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="lily binary; run as `SERVER mcp serve`")
    p.add_argument("--root", required=True, help="LILY_ROOT and cwd of the server")
    p.add_argument("--timeout", type=float, default=120.0, help="read timeout per request (s)")
    p.add_argument("--trace", action="store_true", help="log JSON-RPC traffic to stderr")
    p.add_argument("--http", help="URL of a running `lily mcp serve --http` (instead of spawning stdio)")
    p.add_argument("--token", help="bearer token for --http")
    p.add_argument("scenario", choices=["list", "call", "calls", "sequence", "cancel", "bench"])
    p.add_argument("args", nargs="*")
    a = p.parse_args()
    TRACE = a.trace or bool(os.environ.get("LILY_MCP_TRACE"))
    a.root = os.path.abspath(a.root)
    # The server runs with cwd=root, so make a relative --server path absolute.
    if os.sep in a.server:
        a.server = os.path.abspath(a.server)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        check_args(a)
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        sys.exit(2)
    try:  # hard overall deadline, so a hung server can never hang the test suite
        out = asyncio.run(asyncio.wait_for(run(a), a.deadline))
    except (Exception, BaseExceptionGroup) as e:
        out = {"error": errtext(e)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
