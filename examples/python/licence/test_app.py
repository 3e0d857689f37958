"""Native tests of licence.v1 (`python -m unittest`, with lily_guest on the path)."""

import json
import os
import tempfile
import unittest

import lily_guest as lily
from app import Licence


def tree(files):
    d = tempfile.mkdtemp()
    for rel, text in files.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    return d


class TestLicence(unittest.TestCase):
    def run_on(self, files):
        return lily.run_native(Licence, json.dumps({"topic": "t", "workspace": tree(files)}))

    def test_missing_and_conflicting(self):
        st, out, _ = self.run_on({"a.py": "# SPDX-License-Identifier: MIT\n", "b/c.rs": "// SPDX-License-Identifier: Apache-2.0\n", "d.py": "x = 1\n", "notes.txt": "x"})
        self.assertEqual(st, "ok", out)
        titles = [f["title"] for f in out["findings"]]
        self.assertEqual(titles, ["1 source file(s) without a licence header", "Conflicting licence headers: Apache-2.0, MIT"])
        self.assertEqual(out["findings"][0]["evidence"], ["d.py:1"])
        self.assertEqual(out["findings"][1]["evidence"], ["b/c.rs:1 (Apache-2.0)", "a.py:1 (MIT)"])

    def test_clean_tree_has_no_findings(self):
        st, out, _ = self.run_on({"a.py": "# Copyright 2026 A\n# SPDX-License-Identifier: MIT\n"})
        self.assertEqual((st, out["findings"]), ("ok", []))

    def test_no_workspace(self):
        st, out, _ = lily.run_native(Licence, json.dumps({"topic": "t"}))
        self.assertEqual((st, out["findings"]), ("ok", []))


if __name__ == "__main__":
    unittest.main()
