"""A corpus of hostile and malformed submissions, and what each must (not) achieve.

    python -m grader.hostile --assignment patches --out DIR   # write the corpus as <attack>.ipynb files

Each attack is the reference solution with ONE unit (the assignment's TARGET unit, a plain
function) turned into an attack, or a malformed file. Expectations:
- the attacked unit earns nothing ("zero"), or the notebook earns nothing at all ("all_zero");
- every other unit keeps its full credit where the attack is confined to its unit ("others_full");
- the run finishes, and other students' results are unchanged (checked by the test that grades
  the corpus next to an untouched copy of the solution).
`PROTECTION` says which layer stops the attack; the grading report lists which were active.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass
from pathlib import Path

from grader.notebooks import REPO_ROOT, cell_source, cells_by_grade_id, read_json_notebook

# Per assignment, a unit defined by plain functions: attacks go into its solution region.
TARGETS = {"fcn": "fcn_confusion", "cam": "cam_top1", "patches": "patch_weights", "unet": "unet_weights"}


@dataclass(frozen=True)
class Attack:
    name: str
    what: str
    protection: str
    # "zero": target unit 0, others full; "zero_any": target 0; "all_zero": nothing earned;
    # "full": the attack had no effect, so the honest code under it is graded normally (full marks).
    # ("full" is how read_reference proves the files are hidden: its cell fails if it can read them.)
    expect: str
    cell_prelude: str = ""  # runs when the cell is executed
    body_prelude: str = ""  # runs first inside the target function (at the start of its solution region)


_ALWAYS_EQUAL = """
class _AlwaysEqual:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __float__(self):
        return 0.0
"""

ATTACKS = [
    Attack("always_equal", "returns an object equal to everything", "plain-data replies (weights_only decoding)",
           "zero", cell_prelude=_ALWAYS_EQUAL, body_prelude="return _AlwaysEqual()"),
    Attack("tensor_subclass", "returns a torch.Tensor subclass whose == is always True",
           "plain-data replies (tensor subclasses refused)", "zero",
           cell_prelude="import torch\nclass _EqTensor(torch.Tensor):\n    def __eq__(self, other):\n        return True\n",
           body_prelude="return torch.zeros(3).as_subclass(_EqTensor)"),
    Attack("patch_comparisons", "monkeypatches torch/numpy comparison functions, returns zeros",
           "comparisons run in the trusted parent", "zero_any",
           cell_prelude="import numpy as np\nimport torch\ntorch.allclose = lambda *a, **k: True\n"
                        "torch.equal = lambda *a, **k: True\nnp.allclose = lambda *a, **k: True\n"
                        "np.testing.assert_allclose = lambda *a, **k: None\n",
           body_prelude="return torch.zeros(1)"),
    Attack("patch_builtins_pytest", "replaces builtins, pytest and sys.modules entries",
           "checks (pytest) run in the trusted parent", "zero_any",
           cell_prelude="import builtins, sys, types\nsys.modules['pytest'] = types.ModuleType('pytest')\n"
                        "builtins.isinstance = lambda *a: True\nbuiltins.len = lambda *a: 0\n",
           body_prelude="return None"),
    Attack("sys_exit", "calls sys.exit(0) when called", "SystemExit caught in the worker", "zero",
           cell_prelude="import sys\n", body_prelude="sys.exit(0)"),
    Attack("os_exit_cell", "os._exit(0) while the cell runs", "worker restarted, cell skipped", "zero",
           cell_prelude="import os\nos._exit(0)\n"),
    Attack("kill_parent", "signals its parent and process group", "pid namespace (no parent to signal)", "full",
           cell_prelude="import os, signal\nfor pid in (os.getppid(), -os.getpgid(0), 1):\n    try:\n"
                        "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"),
    Attack("loop_cell", "infinite loop while the cell runs", "per-cell time limit", "zero",
           cell_prelude="while True:\n    pass\n"),
    Attack("loop_call", "infinite loop when called", "per-check time limit", "zero", body_prelude="while True:\n    pass"),
    Attack("memory_bomb", "allocates memory until stopped", "memory cap (cgroup / address-space limit)", "zero",
           cell_prelude="_hog = []\nfor _ in range(1000):\n    _hog.append(bytearray(100 * 1024 * 1024))\n"),
    Attack("fork_bomb", "forks thousands of sleeping children (bounded)", "process cap (cgroup pids / RLIMIT_NPROC)",
           "zero", cell_prelude="import os, time\nfor _ in range(3000):\n    try:\n        if os.fork() == 0:\n"
                               "            time.sleep(120)\n            os._exit(0)\n    except OSError:\n        break\n",
           body_prelude="return None"),
    Attack("output_flood", "prints 1 GB", "output drained by the parent, head and tail kept", "zero",
           cell_prelude="import sys\n_chunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(_chunk)\n",
           body_prelude="return None"),
    Attack("forged_results", "prints fake results and pytest/Gradescope lines", "worker output is never parsed",
           "zero", cell_prelude="print('{\"score\": 100, \"tests\": []}')\nprint('== 99 passed in 0.01s ==')\n",
           body_prelude="print('PASSED')\nreturn None"),
    Attack("write_outside", "writes into the grades folder, other students' folders and /tmp",
           "hidden files (mount namespace) and an unprivileged uid", "zero",
           cell_prelude="import glob, os\n_targets = ['/tmp/segkit-hostile-was-here', os.path.expanduser('~/../grades.csv')]\n"
                        "_targets += glob.glob('/**/grades.csv', recursive=False) + glob.glob('/tmp/*/grades/grades.csv')\n"
                        "for _t in _targets + ['__REPO__/grades/grades.csv', '__REPO__/solutions/x.txt']:\n    try:\n"
                        "        with open(_t, 'w') as _h:\n            _h.write('hostile,1000\\n')\n    except OSError:\n"
                        "        pass\n", body_prelude="return None"),
    Attack("read_reference", "reads solutions/ and grader/ from disk (the cell fails if it can)",
           "hidden files (mount namespace)", "full",
           cell_prelude="import glob\n_stolen = {}\nfor _p in glob.glob('__REPO__/solutions/*/*.ipynb') + "
                        "glob.glob('__REPO__/grader/checks/*.py'):\n    _stolen[_p] = open(_p).read()\n"
                        "assert not _stolen, 'no reference should be readable'\n"),
    Attack("loopback_socket", "connects to a server on the host's loopback", "network namespace", "zero",
           cell_prelude="import socket\ntry:\n    socket.create_connection(('127.0.0.1', __PORT__), timeout=2).sendall(b'leak')\n"
                        "except OSError:\n    pass\n", body_prelude="return None"),
]

MALFORMED = ["invalid_json", "nbformat3", "missing_grade_id", "duplicated_grade_id", "renamed_function",
             "wrong_signature", "non_utf8", "huge_outputs", "too_large"]
MALFORMED_EXPECT = {"invalid_json": "all_zero", "nbformat3": "all_zero", "missing_grade_id": "zero",
                    "duplicated_grade_id": "zero", "renamed_function": "zero", "wrong_signature": "zero",
                    "non_utf8": "full", "huge_outputs": "full", "too_large": "all_zero"}
MALFORMED_PROTECTION = {"invalid_json": "notebook parsed defensively in the parent",
                        "nbformat3": "notebook parsed defensively in the parent",
                        "missing_grade_id": "cells found by grade_id", "duplicated_grade_id": "cells found by grade_id",
                        "renamed_function": "checks call the contract's names",
                        "wrong_signature": "checks call the contract's signature",
                        "non_utf8": "decoding with replacement", "huge_outputs": "outputs never executed or parsed",
                        "too_large": "notebook size cap"}


def _solution(name: str) -> dict:
    return read_json_notebook(REPO_ROOT / "solutions" / name / f"{name}.ipynb")


def _with_target_source(notebook: dict, grade_id: str, source: str) -> dict:
    notebook = copy.deepcopy(notebook)
    (cell,) = cells_by_grade_id(notebook)[grade_id]
    cell["source"] = source
    return notebook


def attack_source(solution_cell: str, attack: Attack, *, port: int) -> str:
    """Inject the attack into a solution cell: at the top, and/or first in the solution region."""
    source = solution_cell
    if attack.body_prelude:
        marker = "### BEGIN SOLUTION\n"
        start = source.index(marker) + len(marker)
        indent = source[start:].split("\n", 1)[0]
        indent = indent[: len(indent) - len(indent.lstrip())]
        body = "".join(f"{indent}{line}\n" for line in attack.body_prelude.split("\n"))
        source = source[:start] + body + source[start:]
    source = attack.cell_prelude + source
    return source.replace("__REPO__", str(REPO_ROOT)).replace("__PORT__", str(port))


def build_corpus(name: str, out_dir: Path, *, port: int = 9) -> dict[str, dict]:
    """Write <attack>.ipynb files; return {student_id: {"expect", "protection", "what"}}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    solution = _solution(name)
    target = TARGETS[name]
    solution_cell = cell_source(cells_by_grade_id(solution)[target][0])
    manifest = {}
    for attack in ATTACKS:
        notebook = _with_target_source(solution, target, attack_source(solution_cell, attack, port=port))
        (out_dir / f"attack-{attack.name}.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
        manifest[f"attack-{attack.name}"] = {"expect": attack.expect, "protection": attack.protection,
                                              "what": attack.what}
    for kind in MALFORMED:
        path = out_dir / f"malformed-{kind}.ipynb"
        path.write_bytes(_malformed(kind, solution, target, solution_cell))
        manifest[f"malformed-{kind}"] = {"expect": MALFORMED_EXPECT[kind], "protection": MALFORMED_PROTECTION[kind],
                                          "what": kind.replace("_", " ")}
    return manifest


def _malformed(kind: str, solution: dict, target: str, solution_cell: str) -> bytes:
    text = json.dumps(solution)
    if kind == "invalid_json":
        return text[: len(text) // 2].encode()
    if kind == "nbformat3":
        return json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": []}], "metadata": {}}).encode()
    notebook = copy.deepcopy(solution)
    if kind == "missing_grade_id":
        notebook["cells"] = [c for c in notebook["cells"]
                             if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != target]
    elif kind == "duplicated_grade_id":
        index = next(i for i, c in enumerate(notebook["cells"])
                     if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == target)
        notebook["cells"].insert(index + 1, copy.deepcopy(notebook["cells"][index]))
    elif kind in ("renamed_function", "wrong_signature"):
        function = solution_cell.split("def ", 1)[1].split("(", 1)[0]
        if kind == "renamed_function":
            source = solution_cell.replace(f"def {function}(", f"def my_{function}(")
        else:
            head, rest = solution_cell.split(f"def {function}(", 1)
            source = head + f"def {function}(only_one_argument):\n    return None\n\ndef _old_{function}(" + rest
        notebook = _with_target_source(notebook, target, source)
    elif kind == "non_utf8":
        marker = "NONUTF8MARKER"
        notebook["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": marker})
        return json.dumps(notebook).replace(marker, "caf\\u00e9").encode("utf-8").replace(b"caf\\u00e9", b"caf\xe9")
    elif kind == "huge_outputs":
        blob = "A" * (20 * 1024 * 1024)
        notebook["cells"][0].setdefault("outputs", [])
        for cell in notebook["cells"]:
            if cell.get("cell_type") == "code":
                cell["outputs"] = [{"output_type": "display_data", "metadata": {}, "data": {"image/png": blob}}]
                break
    elif kind == "too_large":
        notebook["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "B" * (70 * 1024 * 1024)})
    return json.dumps(notebook).encode()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", required=True, choices=sorted(TARGETS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    manifest = build_corpus(args.assignment, args.out)
    (args.out / "corpus.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {len(manifest)} submissions to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
