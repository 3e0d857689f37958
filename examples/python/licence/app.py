"""licence.v1: finds source files in the granted workspace that lack a
licence header, and files whose SPDX identifiers disagree."""

import os

import lily_guest as lily

SOURCE_SUFFIXES = (".py", ".rs", ".js", ".ts", ".go", ".c", ".h", ".cpp", ".java", ".sh", ".rb")
HEAD_LINES = 12
MAX_FILES = 2000
MAX_EVIDENCE = 20


def header(text):
    """(spdx id or None, has any licence header) of a file's first lines."""
    spdx = None
    has = False
    for n, line in enumerate(text.splitlines()[:HEAD_LINES], 1):
        if "SPDX-License-Identifier:" in line:
            spdx = (line.split("SPDX-License-Identifier:", 1)[1].strip().rstrip("*/").strip() or None, n)
            has = True
        elif "copyright" in line.lower() or "licensed under" in line.lower():
            has = True
    return spdx, has


def scan(root):
    """[(relative path, spdx, line, has header)] of the source files under root, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.endswith(SOURCE_SUFFIXES):
                continue
            if len(out) >= MAX_FILES:
                return out
            path = os.path.join(dirpath, f)
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read(4096)
            except OSError:
                continue
            spdx, has = header(text)
            rel = os.path.relpath(path, root)
            out.append((rel, spdx[0] if spdx else None, spdx[1] if spdx else 1, has))
    return out


class Licence(lily.Specialist):
    id = "licence.v1"
    version = "1.0.0"
    summary = "Finds missing or conflicting licence headers in the granted workspace (Python)"

    def review(self, input):
        if not input.workspace:
            return [], "no workspace granted: nothing to check"
        files = scan(input.workspace)
        findings = []
        missing = [rel for rel, _, _, has in files if not has]
        if missing:
            findings.append(
                lily.Finding(
                    f"{len(missing)} source file(s) without a licence header",
                    "add an `SPDX-License-Identifier:` line at the top of every source file",
                    0.5,
                    [f"{rel}:1" for rel in missing[:MAX_EVIDENCE]],
                )
            )
        ids = {}
        for rel, spdx, line, _ in files:
            if spdx:
                ids.setdefault(spdx, []).append(f"{rel}:{line}")
        if len(ids) > 1:
            evidence = [f"{e} ({i})" for i in sorted(ids) for e in ids[i]][:MAX_EVIDENCE]
            findings.append(
                lily.Finding(
                    f"Conflicting licence headers: {', '.join(sorted(ids))}",
                    "use one licence for the project, or document why files differ",
                    0.7,
                    evidence,
                )
            )
        lily.emit("info", "licence_scanned", files=len(files), missing=len(missing), licences=len(ids))
        return findings, f"{len(files)} source file(s) checked"


WitWorld = lily.export(Licence)
