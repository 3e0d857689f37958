#!/usr/bin/env python3
"""A/B of two lily binaries, alternated in one run (issue 19 changes):
`jobs run demo` (the two-specialist council), `jobs run echo-step` with 1
vs 1,000 specs, `jobs runs hist` over 100,000 runs (one copy of the store per binary, so neither reads an index the other
rewrote), `--version` as the floor. Usage: perf-ab.py BEFORE AFTER [N]"""
import json, os, resource, shutil, statistics, subprocess, sys, tempfile, time
before, after = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 11
tmp = tempfile.mkdtemp(prefix="lily-ab-")
ECHO = """id: echo-step
title: Echo one input
target:
  kind: blueprint
  id: step.v1
  input:
    message: hello
bindings:
  runnable: echo.v1
trigger:
  type: manual
runtime:
  timeout_seconds: 10
output:
  summary_format: json
"""
def lily(b, root, *a):
    r = subprocess.run([b, "--root", root, *a], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert r.returncode == 0, (a, r.stderr[-500:])
def mk(name, fillers):
    root = os.path.join(tmp, name); os.makedirs(root)
    lily(after, root, "init")
    open(os.path.join(root, ".lily/jobs/echo-step.job.yaml"), "w").write(ECHO)
    for i in range(fillers):
        open(os.path.join(root, f".lily/jobs/filler-{i:04}.job.yaml"), "w").write(ECHO.replace("id: echo-step", f"id: filler-{i:04}"))
    return root
one, many = mk("one", 0), mk("many", 999)
demo = mk("demo", 0)
hist = mk("hist", 0)
hist_b = mk("hist-before", 0)
lily(after, hist, "jobs", "run", "echo-step")
rdir = os.path.join(hist, ".lily/runs/echo-step")
src = sorted(d for d in os.listdir(rdir) if os.path.isdir(os.path.join(rdir, d)))[-1]
receipt = json.load(open(os.path.join(rdir, src, "run_receipt.json")))
line = next(json.loads(l) for l in open(os.path.join(rdir, "index.jsonl")) if '"status"' in l)
t = time.time()
jobs = [os.path.join(r, ".lily/runs/hist") for r in (hist, hist_b)]
ixs = []
for job in jobs:
    os.makedirs(job); ixs.append(open(os.path.join(job, "index.jsonl"), "w"))
for i in range(100_000):
    s = 1578297600 + i * 600
    rid = time.strftime("%Y%m%dT%H%M%S", time.gmtime(s)) + ".000Z-%08x" % ((i * 2654435761) & 0xffffffff)
    receipt["job_id"] = "hist"; receipt["run_id"] = rid
    body = json.dumps(receipt, separators=(",", ":"))
    line["run_id"] = rid
    for job, ix in zip(jobs, ixs):
        d = os.path.join(job, rid); os.mkdir(d)
        with open(os.path.join(d, "run_receipt.json"), "w") as f: f.write(body)
        ix.write(json.dumps(line, separators=(",", ":")) + "\n")
for ix in ixs: ix.close()
print(f"generated 100,000 runs in {time.time()-t:.1f} s", flush=True)
cases = [("version", one, ["--version"]), ("jobs run demo", demo, ["jobs", "run", "demo"]), ("1 spec", one, ["jobs", "run", "echo-step"]), ("1,000 specs", many, ["jobs", "run", "echo-step"]), ("jobs runs 100k", hist, ["jobs", "runs", "hist"])]
own_root = {(before, hist): hist_b}  # BEFORE lists its own copy of the store
R = lambda b, root: own_root.get((b, root), root)
for b in (before, after):
    for _, root, a in cases: lily(b, R(b, root), *a)  # warm-up (writes the spec index / rebuilds the run index)
time.sleep(2.5)  # let fresh files settle past the index's 2 s
for b in (before, after):
    for _, root, a in cases: lily(b, R(b, root), *a)
res = {(b, c[0]): [] for b in (before, after) for c in cases}
cpu = {(b, c[0]): [] for b in (before, after) for c in cases}
rss = {(b, c[0]): [] for b in (before, after) for c in cases}
flt = {(b, c[0]): [] for b in (before, after) for c in cases}
def timed(b, root, a):
    t = time.perf_counter()
    p = subprocess.Popen([b, "--root", root, *a], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    assert status == 0, (b, a, status)
    return time.perf_counter() - t, ru
for _ in range(N):
    for name, root, a in cases:
        for b in (before, after):
            wall, ru = timed(b, R(b, root), a)
            res[(b, name)].append(wall); cpu[(b, name)].append(ru.ru_utime + ru.ru_stime)
            rss[(b, name)].append(ru.ru_maxrss / 1024); flt[(b, name)].append(ru.ru_minflt)
print(f"load average {open('/proc/loadavg').read().split()[:3]}; medians of {N}, alternated")
print("| measurement | before | after | after/before |\n| --- | --- | --- | --- |")
med = {k: statistics.median(v) * 1e3 for k, v in res.items()}
for name, _, _ in cases:
    print(f"| {name} | {med[(before,name)]:.2f} ms | {med[(after,name)]:.2f} ms | {med[(after,name)]/med[(before,name)]:.2f} |")
print("CPU time of the child (user + sys, getrusage), medians:")
print("| measurement | before | after | after/before |\n| --- | --- | --- | --- |")
cmed = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
for name, _, _ in cases:
    print(f"| {name} | {cmed[(before,name)]:.1f} ms | {cmed[(after,name)]:.1f} ms | {cmed[(after,name)]/max(cmed[(before,name)],1e-9):.2f} |")
print("Peak RSS (ru_maxrss) and minor page faults of the child, medians:")
print("| measurement | RSS before | RSS after | faults before | faults after |\n| --- | --- | --- | --- | --- |")
for name, _, _ in cases:
    m = lambda d, b: statistics.median(d[(b, name)])
    print(f"| {name} | {m(rss, before):.1f} MiB | {m(rss, after):.1f} MiB | {m(flt, before):.0f} | {m(flt, after):.0f} |")
for b, lab in ((before, "before"), (after, "after")):
    print(f"{lab}: 1,000 specs − 1 spec = {med[(b,'1,000 specs')]-med[(b,'1 spec')]:+.2f} ms; jobs runs / --version = {med[(b,'jobs runs 100k')]/med[(b,'version')]:.2f}; jobs run demo / --version = {med[(b,'jobs run demo')]/med[(b,'version')]:.2f}")
shutil.rmtree(tmp)
