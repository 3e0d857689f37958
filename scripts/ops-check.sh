#!/usr/bin/env bash
# Pre-merge operational checks (`just ops-check`): run the representative
# example jobs, verify each run's required artifact set, and run one invalid
# job twice to confirm the same code and message both times.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
lily="${LILY_BIN:-$repo/target/debug/lily}"
[ -x "$lily" ] || { echo "ops-check: $lily not built (cargo build -p lily)"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
"$lily" init >/dev/null
cp "$repo"/examples/jobs/*.job.yaml .lily/jobs/
fail=0
check_run() {
    local job="$1"; shift
    local out
    if ! out="$("$lily" --json jobs run "$job")"; then
        echo "FAIL $job: run failed"; echo "$out" | head -20; fail=1; return
    fi
    local dir
    dir="$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_dir"])')"
    for f in run_receipt.json events.jsonl "$@"; do
        if [ ! -s "$dir/$f" ]; then echo "FAIL $job: missing $f"; fail=1; fi
    done
    python3 - "$dir" <<'PY' || fail=1
import json, sys, hashlib, os
d = sys.argv[1]
r = json.load(open(os.path.join(d, "run_receipt.json")))
assert r["status"] == "succeeded", r["status"]
for a in r["artifacts"]:
    data = open(os.path.join(d, a["name"]), "rb").read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == a["sha256"], a["name"]
types = [json.loads(l)["type"] for l in open(os.path.join(d, "events.jsonl"))]
assert types[0] == "job_started" and "job_completed" in types, types
PY
    echo "ok   $job"
}
check_run demo summary.md report.md evidence.json
check_run council-defaults summary.md report.md evidence.json
check_run echo-step summary.json result.json
"$lily" jobs validate .lily/jobs/nightly-council.job.yaml >/dev/null && echo "ok   nightly-council (validated)" || { echo "FAIL nightly-council: invalid"; fail=1; }

cp "$repo/examples/invalid/broken.job.yaml" .lily/jobs/
a="$("$lily" --json jobs run broken | python3 -c 'import json,sys; e=json.load(sys.stdin)["receipt"]["error"]; print(e["code"], e["message"])' || true)"
b="$("$lily" --json jobs run broken | python3 -c 'import json,sys; e=json.load(sys.stdin)["receipt"]["error"]; print(e["code"], e["message"])' || true)"
if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "ok   broken: same code and message twice: $a"; else echo "FAIL broken: '$a' vs '$b'"; fail=1; fi
exit $fail
