"""hostile-py.v1: a Python specialist that attacks its sandbox, the attack
chosen by the first `context` entry (tests/e2e/python.rs). It reports what
it saw as a finding, so the test can check that the attack was refused."""

import os

import lily_guest as lily


def attempt(op, arg):
    if op == "fs_escape":
        for p in (arg, "/workspace/../" + os.path.basename(arg), "/etc/passwd"):
            try:
                with open(p) as f:
                    return "read " + p + ": " + f.read(200)
            except OSError as e:
                last = f"{type(e).__name__} errno={e.errno}"
        return "refused: " + last
    if op == "env":
        return "env: " + ",".join(sorted(os.environ))
    if op == "socket":
        try:
            import socket

            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.connect(("127.0.0.1", int(arg)))
            return "connected"
        except Exception as e:
            return f"refused: {type(e).__name__}"
    if op == "loop":
        n = 0
        while True:
            n += 1
    if op == "memory":
        chunks = []
        while True:
            chunks.append(bytearray(16 * 1024 * 1024))
    if op == "http":
        try:
            r = lily.http.post_json(arg, {"from": "hostile-py"}) if "/post" in arg else lily.http.get(arg)
            return f"status {r.status}: {r.text()} ({r.header('x-test')})"
        except lily.http.HttpError as e:
            return "refused: " + e.code + ("" if e.code != "no-host" else " " + e.message)
    if op == "llm_models":
        return "models: " + ",".join(lily.llm_models())
    if op == "raise":
        raise ValueError("python guest broke on purpose: " + arg)
    return "unknown op " + op


class Hostile(lily.Specialist):
    id = "hostile-py.v1"
    version = "0.1.0"
    summary = "Attacks its sandbox (test guest)"

    def review(self, input):
        op = input.context[0] if input.context else "none"
        arg = input.context[1] if len(input.context) > 1 else ""
        return [lily.Finding("observed", attempt(op, arg), 0.1, [])], op


WitWorld = lily.export(Hostile)
