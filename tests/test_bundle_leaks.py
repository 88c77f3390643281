"""Does anything in the student bundle answer a graded unit?

Students receive the whole bundle (`segkit release`): every student notebook, the `starter` package
with every assignment's public checks, the data scripts. A graded unit must not be answered anywhere
in it, whatever its name, so two tests look at the bundle itself (built into a temporary folder):

* behavioural: every public function or class of the bundle whose signature fits a graded unit's
  function or class (same kind, an argument count both accept) is plugged in as the student's
  answer, a notebook whose unit cell is the released stub plus an import of (or, outside `starter`,
  the source of) the candidate under the unit's name, and graded by the unit's hidden checks in the
  sandbox. None may earn more than `MAX_SHARE` of the unit's points. Rows of notebooks carry one
  candidate per unit each, so the 3,045 fitting pairs of today's bundle make 656 notebooks: `make proof`
  grades them all. `make test` first screens them cheaply in a process of its own (cwd and HOME a
  scratch folder): the public check's first call of the unit's function on the reference solution is
  recorded, every candidate is called with the same arguments, and only those that return the same kind
  of result (type, tensor shape, dict keys) are graded: 34 pairs in 11 notebooks, about 28 s of CPU for
  the screen and 27 s for the grading. Symbols no public check calls (U-Net's DoubleConv, Down, ...) are
  left to the proof.
* textual: the kit's similarity engine (`segkit.similarity`, copydetect's winnowing over normalised
  tokens) compares every function and class of the bundle, at any depth, with the code each
  solution cell adds to its stub (its solution regions). None may cover `DEFAULT_THRESHOLD` of that
  code with at least `MIN_OVERLAP` matching characters (a one-line helper that a solution happens to
  contain is no answer).

Planted leaks show that each test catches what it is for: a starter function that is a solution
cell's function renamed (behavioural), and a function whose body is an answer but that nothing calls
and whose arguments do not fit (textual).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.assignments import REPO_ROOT, assignment_names, cells_by_grade_id, load_assignment, read_notebook

MAX_SHARE = 0.5  # of a unit's points: what a bundle function may earn as the student's answer
ANY = 10**6  # "any number of arguments" (*args)
# Limits of the grading runs: generous for honest code while the test processes share the cores.
RUN_OPTIONS = ["--cell-timeout", "60", "--probe-timeout-cap", "30", "--memory-mb", "3072"]


# --- the bundle ----------------------------------------------------------------------------------


def build_bundle(folder: Path) -> dict[str, str]:
    """`segkit release`'s zip, built into `folder` and read back: {path inside the bundle: text}."""
    from segkit.build.release import BUNDLE_ROOT, build_release

    archive = build_release(folder / "student-bundle.zip", check_sources=False)  # drift: test_notebooks' job
    with zipfile.ZipFile(archive) as bundle:
        return {
            name.removeprefix(f"{BUNDLE_ROOT}/"): bundle.read(name).decode("utf-8", errors="replace")
            for name in bundle.namelist()
            if name.endswith((".py", ".ipynb"))
        }


@dataclass(frozen=True)
class Definition:
    """A function or class of the bundle."""

    where: str  # "starter/train.py" or "notebooks/unet/unet.ipynb [cell 12]"
    name: str
    kind: str  # "function" or "class"
    required: int  # positional arguments it needs (self excluded; a class: its __init__'s)
    most: int  # positional arguments it takes (ANY with *args)
    source: str  # its own code
    module: str | None  # the importable module of a .py file ("starter.train"), None in a notebook
    top_level: bool


def _arguments(node: ast.FunctionDef | None) -> tuple[int, int]:
    if node is None:  # a class without __init__ of its own: whatever its base takes
        return 0, ANY
    names = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) - len(node.args.defaults), ANY if node.args.vararg else len(names)


def signature(node: ast.FunctionDef | ast.ClassDef) -> tuple[str, int, int]:
    """(kind, required, most) of a def or class (a class by its own __init__)."""
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        return ("class", *_arguments(init))
    return ("function", *_arguments(node))


def _without_magics(source: str) -> str:
    # IPython lines (`!python ...`, `%env ...`) are not Python; comment them out to parse the rest.
    return "\n".join("# " + line if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines())


def _code_texts(files: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """{where: (code, importable module or None)} of every .py file and given notebook code cell."""
    texts = {}
    for path, text in sorted(files.items()):
        if path.endswith(".py"):
            module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            texts[path] = (text, module)
        elif path.endswith(".ipynb"):
            for index, cell in enumerate(json.loads(text)["cells"]):
                # graded cells are the student's own (stubs in the bundle): the given cells are what is shipped
                if cell.get("cell_type") == "code" and not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                    texts[f"{path} [cell {index}]"] = (_without_magics(source), None)
    return texts


def definitions(files: dict[str, str]) -> list[Definition]:
    """Every function and class of the bundle, at any depth (methods too)."""
    found = []
    for where, (code, module) in _code_texts(files).items():
        tree = ast.parse(code)
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                kind, required, most = signature(node)
                source = ast.get_source_segment(code, node) or ""
                found.append(Definition(where, node.name, kind, required, most, source, module, id(node) in top))
    return found


def public_candidates(files: dict[str, str]) -> list[Definition]:
    """The bundle's public top-level functions and classes: what a student could call or paste."""
    return [d for d in definitions(files) if d.top_level and not d.name.startswith("_")]


# --- the graded units ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Symbol:
    """A function or class a graded unit's solution cell defines (what the hidden checks look up)."""

    assignment: str
    grade_id: str
    points: float
    name: str
    kind: str
    required: int
    most: int


def unit_symbols(assignment: str) -> list[Symbol]:
    spec = load_assignment(assignment)
    symbols = []
    for unit in spec.auto_units:
        for node in ast.parse(unit.source).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                symbols.append(Symbol(assignment, unit.grade_id, unit.points, node.name, *signature(node)))
    return symbols


def fits(symbol: Symbol, candidate: Definition) -> bool:
    """Same kind, and some number of positional arguments that both the unit's symbol and the candidate take."""
    return candidate.kind == symbol.kind and max(symbol.required, candidate.required) <= min(
        symbol.most, candidate.most
    )


def solution_code(source: str) -> str:
    """What a solution cell adds to its stub: its solution regions, dedented and joined."""
    regions = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source, re.S)
    return "\n".join(textwrap.dedent(region) for region in regions) if regions else source


# --- behavioural: bundle code plugged in as the student's answer --------------------------------


def _guarded_module_source(code: str) -> str:
    """A module's code for exec() where the kit is not installed: each top-level import that fails is
    skipped (the rest of the module still defines its functions), `__main__` blocks dropped."""
    tree = ast.parse(code)
    body = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "module", None) != "__future__":
            guard = ast.parse("try:\n    pass\nexcept ImportError:\n    pass").body[0]
            guard.body = [node]
            body.append(guard)
        elif not (isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)):
            body.append(node)
    return ast.unparse(ast.Module(body=body, type_ignores=[]))


def importable(candidate: Definition, files: dict[str, str]) -> bool:
    """Whether the grading worker can import the candidate's module: it sees the kit's own starter
    package, so only a starter file identical to the kit's."""
    if candidate.module is None or candidate.module.split(".")[0] != "starter":
        return False
    kit_file = REPO_ROOT / candidate.where
    return kit_file.is_file() and kit_file.read_text(encoding="utf-8") == files[candidate.where]


def plug_in(symbol: Symbol, candidate: Definition, files: dict[str, str]) -> str:
    """Lines that make `candidate` the student's `symbol`: an import where the worker has the module,
    else the candidate's module run from its source, else (a notebook cell) the candidate's own code."""
    if importable(candidate, files):
        return f"from {candidate.module} import {candidate.name} as {symbol.name}"
    if candidate.module is not None:
        code = _guarded_module_source(files[candidate.where])
        return (
            "import types as _types\n"
            f"_module = _types.ModuleType({candidate.module!r})\n"
            f"exec(compile({code!r}, {candidate.where!r}, 'exec'), _module.__dict__)\n"
            f"{symbol.name} = _module.{candidate.name}"
        )
    return f"{candidate.source}\n\n{symbol.name} = {candidate.name}"


def fitting(assignment: str, candidates: list[Definition]) -> dict[Symbol, list[Definition]]:
    """{symbol of a unit of `assignment`: the candidates that fit it}."""
    return {symbol: [c for c in candidates if fits(symbol, c)] for symbol in unit_symbols(assignment)}


@dataclass(frozen=True)
class Row:
    """One notebook to grade: per unit, the candidates plugged in as its symbols."""

    student: str
    assignment: str
    cells: dict[str, str]  # grade_id -> cell source
    plugged: dict[str, list[tuple[str, str]]]  # grade_id -> [(symbol, "where: name"), ...]


def plan_rows(
    assignment: str, pairs: dict[Symbol, list[Definition]], files: dict[str, str], *, prefix: str = "row"
) -> list[Row]:
    """Notebooks that together plug every candidate of `pairs` into its symbol.

    Row r gives each symbol its r-th candidate, so an assignment needs as many notebooks as its
    most-fitted symbol has candidates, not one per candidate. (Units are graded apart: a candidate in one
    unit cannot earn points in another.)"""
    spec = load_assignment(assignment)
    released = cells_by_grade_id(read_notebook(spec.release_path))
    stubs = {gid: "".join(cells[0]["source"]) for gid, cells in released.items()}
    per_unit: dict[str, list[tuple[Symbol, list[Definition]]]] = {}
    for symbol, candidates in pairs.items():
        per_unit.setdefault(symbol.grade_id, []).append((symbol, candidates))
    n_rows = max((len(c) for units in per_unit.values() for _, c in units), default=0)
    rows = []
    for r in range(n_rows):
        cells, plugged = {}, {}
        for grade_id, units in per_unit.items():
            lines = [(s, c[r]) for s, c in units if r < len(c)]
            if lines:
                plugged_lines = "\n".join(plug_in(s, c, files) for s, c in lines)
                cells[grade_id] = f"{stubs[grade_id]}\n\n{plugged_lines}\n"
                plugged[grade_id] = [(s.name, f"{c.where}: {c.name}") for s, c in lines]
        rows.append(Row(f"{prefix}-{assignment}-{r:03d}", assignment, cells, plugged))
    return rows


def grade_rows(rows: list[Row], folder: Path, jobs: int = 2) -> dict[tuple[str, str], dict]:
    """Grade every row (only the units it plugs something into) in one grading run.

    Returns: {(student, grade_id): {"points": earned, "max": unit's points, "plugged": [...]}}."""
    from segkit.proof.examples import replace_sources
    from starter.common import write_notebook

    submitted, units_map = folder / "submitted", {}
    for row in rows:
        solution = read_notebook(load_assignment(row.assignment).solution_path)
        notebook = replace_sources(solution, row.cells)
        path = submitted / row.student / row.assignment / f"{row.assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_notebook(path, notebook)
        units_map[row.student] = sorted(row.cells)
    (folder / "units-map.json").write_text(json.dumps(units_map), encoding="utf-8")
    out = folder / "grades"
    command = [sys.executable, "-m", "grader", str(submitted), "--out", str(out), "-j", str(jobs), *RUN_OPTIONS]
    command += ["--units-map", str(folder / "units-map.json")]
    run = subprocess.run(
        command, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    scores = {}
    by_student = {row.student: row for row in rows}
    for path in (out / "results").glob("*/*.json"):
        result = json.loads(path.read_text(encoding="utf-8"))
        row = by_student[result["student_id"]]
        for grade_id, plugged in row.plugged.items():
            unit = result["units"][grade_id]
            scores[(row.student, grade_id)] = {"points": unit["points"], "max": unit["max_points"], "plugged": plugged}
    assert {student for student, _ in scores} == set(by_student), "a row was not graded"
    return scores


def leaks(scores: dict[tuple[str, str], dict]) -> list[str]:
    """'grade_id: points/max by [plugged]' of every unit a bundle candidate earned more than MAX_SHARE of."""
    return sorted(
        f"{gid}: {s['points']:g}/{s['max']:g} by {s['plugged']}"
        for (_, gid), s in scores.items()
        if s["points"] > MAX_SHARE * s["max"]
    )


# --- the cheap screen of `make test`: does the candidate answer like the reference on one call? -----

SCREEN_TIMEOUT_S = 10  # one call of one candidate, in the screening process


def public_check_calls(assignment: str) -> dict[str, list[str]]:
    """{grade_id: names passed to its public check} from the released notebook's `check("unit", A, B)` cells."""
    calls = {}
    for cell in read_notebook(load_assignment(assignment).release_path)["cells"]:
        if cell.get("cell_type") != "code":
            continue
        source = _without_magics("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"])
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and all(isinstance(a, ast.Name) for a in node.args[1:]):
                    calls[first.value] = [a.id for a in node.args[1:]]
    return calls


def result_shape(value) -> str:
    """What kind of result a call gave: its type family, and the shape of a tensor or array."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor | np.ndarray):
        return f"{type(value).__name__}{tuple(value.shape)}"
    if isinstance(value, torch.nn.Module):
        return "module"
    if isinstance(value, bool | int | float):
        return "number"
    if isinstance(value, tuple | list):
        return f"{type(value).__name__}[{', '.join(result_shape(v) for v in value)}]"
    if isinstance(value, dict):
        return "dict{" + ", ".join(f"{k}: {result_shape(v)}" for k, v in sorted(value.items(), key=str)) + "}"
    return type(value).__name__


def _frozen(value):
    """A deep copy, but networks shared: copying a VGG16 per candidate would cost seconds, and what a
    candidate does to one changes no screen's outcome (the result's kind)."""
    import copy

    import torch

    modules = [v for v in (value if isinstance(value, tuple | list) else [value]) if isinstance(v, torch.nn.Module)]
    if isinstance(value, dict):
        modules = [v for v in value.values() if isinstance(v, torch.nn.Module)]
    return copy.deepcopy(value, {id(m): m for m in modules})


def _first_call(check, arguments, position) -> tuple | None:
    """(args, kwargs, result shape) of the first call the public check makes of argument `position`."""
    seen = []
    original = arguments[position]

    def recorder(*args, **kwargs):
        frozen = (_frozen(args), _frozen(kwargs))
        result = original(*args, **kwargs)
        if not seen:
            seen.append((*frozen, result_shape(result)))
        return result

    try:
        check(*[recorder if i == position else a for i, a in enumerate(arguments)])
    except BaseException:  # only the recorded call matters
        pass
    return seen[0] if seen else None


def _call_within(function, args, kwargs) -> str:
    import signal

    def give_up(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(SCREEN_TIMEOUT_S)
    try:
        return result_shape(function(*_frozen(args), **_frozen(kwargs)))
    except TimeoutError:
        return "timeout"
    except BaseException:  # any failure of the candidate on the reference's inputs
        return "raised"
    finally:
        signal.alarm(0)


def _load_candidate(item: dict, setup: dict, files: dict, modules: dict):
    import importlib
    import types

    if item["importable"]:
        return getattr(importlib.import_module(item["module"]), item["name"])
    if item["module"]:
        if item["module"] not in modules:
            modules[item["module"]] = types.ModuleType(item["module"])
            code = _guarded_module_source(files[item["where"]])
            exec(compile(code, item["where"], "exec"), modules[item["module"]].__dict__)
        return getattr(modules[item["module"]], item["name"])
    namespace = dict(setup)
    exec(item["source"], namespace)
    return namespace[item["name"]]


def screen_main(folder: str) -> None:
    """In a process of its own (cwd and HOME a scratch folder): record the first call each unit's public
    check makes of each symbol on the reference solution, then call every fitting candidate the same way
    and note what kind of result it gives; write the outcomes."""
    os.environ.update(SEGKIT_GRADING="1", SEGKIT_FAST="1")
    from starter.checks import CHECKS, _load_all

    _load_all()
    plan = json.loads((Path(folder) / "screen-plan.json").read_text(encoding="utf-8"))
    files = json.loads((Path(folder) / "bundle.json").read_text(encoding="utf-8"))
    outcomes, seconds = {}, {}
    for assignment, items in plan.items():
        assignment_started = time.perf_counter()
        spec = load_assignment(assignment)
        setup: dict = {}
        for _, source in spec.setup_cells:
            exec(source, setup)
        reference = dict(setup)
        for unit in spec.auto_units:
            exec(unit.source, reference)
        modules: dict = {}
        recorded: dict[tuple[str, str], tuple | None] = {}
        for item in items:
            key = (item["grade_id"], item["symbol"])
            if key not in recorded:
                arguments = [reference.get(name) for name in item["call"]]
                recorded[key] = _first_call(CHECKS[item["grade_id"]], arguments, item["call"].index(item["symbol"]))
            if recorded[key] is None:
                outcomes[item["key"]] = "no recorded call"
                continue
            args, kwargs, expected = recorded[key]
            try:
                candidate = _load_candidate(item, setup, files, modules)
            except BaseException:  # a candidate that cannot even be defined here
                outcomes[item["key"]] = "raised"
                continue
            started = time.perf_counter()
            got = _call_within(candidate, args, kwargs)
            outcomes[item["key"]] = "same kind" if got == expected else got
            seconds[item["key"]] = time.perf_counter() - started
        seconds[assignment] = time.perf_counter() - assignment_started
    (Path(folder) / "screen-outcomes.json").write_text(json.dumps(outcomes), encoding="utf-8")
    (Path(folder) / "screen-seconds.json").write_text(json.dumps(seconds), encoding="utf-8")


def _key(symbol: Symbol, candidate: Definition) -> str:
    return f"{symbol.assignment}/{symbol.grade_id}/{symbol.name} <- {candidate.where}: {candidate.name}"


def screen(pairs: dict[Symbol, list[Definition]], files: dict[str, str], folder: Path) -> dict[str, str]:
    """{pair key: "same kind" | "raised" | "timeout" | "no public call" | another result's kind} per pair."""
    calls = {name: public_check_calls(name) for name in {s.assignment for s in pairs}}
    plan: dict[str, list[dict]] = {}
    outcomes = {}
    for symbol, candidates in pairs.items():
        call = calls[symbol.assignment].get(symbol.grade_id, [])
        for candidate in candidates:
            if symbol.name not in call:
                outcomes[_key(symbol, candidate)] = "no public call"
                continue
            plan.setdefault(symbol.assignment, []).append(
                {
                    "key": _key(symbol, candidate),
                    "grade_id": symbol.grade_id,
                    "symbol": symbol.name,
                    "call": call,
                    "importable": importable(candidate, files),
                    "module": candidate.module,
                    "where": candidate.where,
                    "name": candidate.name,
                    "source": candidate.source,
                }
            )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "screen-plan.json").write_text(json.dumps(plan), encoding="utf-8")
    (folder / "bundle.json").write_text(json.dumps(files), encoding="utf-8")
    scratch = folder / "scratch"
    scratch.mkdir(exist_ok=True)
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import {Path(__file__).stem} as m; m.screen_main({str(folder)!r})"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(scratch), SEGKIT_DATA=str(scratch / "data"))
    env["PIP_NO_INDEX"] = "1"  # a kit helper that runs pip (install_kit) must not reach a package index
    run = subprocess.run([sys.executable, "-c", code], cwd=scratch, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    outcomes.update(json.loads((folder / "screen-outcomes.json").read_text(encoding="utf-8")))
    return outcomes


def screened(pairs: dict[Symbol, list[Definition]], outcomes: dict[str, str]) -> dict[Symbol, list[Definition]]:
    """The pairs whose candidate, called as the public check calls the reference, gives the same kind of result
    (or runs out of time). Symbols no public check calls (U-Net's DoubleConv, Down, ...) cannot be screened:
    the exhaustive proof grades theirs."""
    keep = ("same kind", "timeout")
    return {s: [c for c in cs if outcomes[_key(s, c)] in keep] for s, cs in pairs.items()}


def all_pairs(files: dict[str, str], candidates: list[Definition] | None = None) -> dict[Symbol, list[Definition]]:
    """Every (unit symbol, fitting candidate) of every assignment."""
    candidates = public_candidates(files) if candidates is None else candidates
    return {s: c for name in assignment_names() for s, c in fitting(name, candidates).items()}


def behavioural_leaks(files: dict[str, str], pairs: dict[Symbol, list[Definition]], folder: Path) -> list[str]:
    """Grade every pair (rows per assignment, one grading run) and list what earned too much."""
    rows = [
        row
        for name in sorted({s.assignment for s in pairs})
        for row in plan_rows(name, {s: c for s, c in pairs.items() if s.assignment == name}, files)
    ]
    return leaks(grade_rows(rows, folder)) if rows else []


# --- textual: the similarity engine on every function of the bundle --------------------------------


def solution_codes() -> dict[str, str]:
    """{"assignment/grade_id": the code its solution cell adds to the stub} of every graded unit."""
    return {
        f"{name}/{unit.grade_id}": solution_code(unit.source)
        for name in assignment_names()
        for unit in load_assignment(name).auto_units
    }


def compared_pieces(files: dict[str, str]) -> dict[str, str]:
    """{where: code} of every function and class of the bundle (at any depth) and every given notebook cell."""
    pieces = {f"{d.where}: {d.name}": d.source for d in definitions(files)}
    pieces.update({where: code for where, (code, module) in _code_texts(files).items() if module is None})
    return pieces


def textual_leaks(files: dict[str, str]) -> list[str]:
    """'piece ~ unit (share, overlap)' of every piece of bundle code that covers `DEFAULT_THRESHOLD` of a
    unit's solution code with at least `MIN_OVERLAP` matching normalised characters."""
    from segkit.similarity import DEFAULT_THRESHOLD, MIN_OVERLAP, Fingerprinter, normalise_code

    fingerprints = Fingerprinter([])  # nothing to discount: solution regions hold no stub text
    found = []
    solutions = {unit: normalise_code(code) for unit, code in solution_codes().items()}
    for where, code in compared_pieces(files).items():
        piece = normalise_code(code)
        for unit, solution in solutions.items():
            match = fingerprints.compare(solution, piece)  # A = the solution: the share of it the piece covers
            if match is not None and match.similarity_a >= DEFAULT_THRESHOLD and match.tokens_overlap >= MIN_OVERLAP:
                found.append(f"{where} ~ {unit} ({match.similarity_a:.2f} of its code, {match.tokens_overlap} chars)")
    return sorted(found)


# --- planted leaks -----------------------------------------------------------------------------------


def _solution_source(assignment: str, grade_id: str) -> str:
    return next(u.source for u in load_assignment(assignment).auto_units if u.grade_id == grade_id)


def planted_bundle(files: dict[str, str]) -> dict[str, str]:
    """The bundle with `starter/planted.py`: the mask_iou unit's solution renamed `pairwise_overlap`, and
    a private function of seven arguments (it fits no unit) whose body is unet_train_epoch's solution with
    its names changed, called by nothing."""
    renamed = _solution_source("instance", "inst_mask_iou").replace("def mask_iou(", "def pairwise_overlap(")
    body = solution_code(_solution_source("unet", "unet_train_epoch"))
    for old, new in (("model", "net"), ("loader", "batches"), ("optimizer", "opt"), ("loss_fn", "criterion")):
        body = re.sub(rf"\b{old}\b", new, body)
    unused = "def _spare_epoch(net, batches, opt, criterion, device, verbose, label):\n" + textwrap.indent(body, "    ")
    return {**files, "starter/planted.py": f"import torch\n\n\n{renamed}\n\n\n{unused}\n"}


# --- the tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> dict[str, str]:
    return build_bundle(tmp_path_factory.mktemp("bundle"))


def test_the_scans_see_the_whole_bundle(bundle):
    """Do the tests read the starter package, the data scripts and every notebook's given cells (not its stubs)?"""
    candidates = public_candidates(bundle)
    wheres = {c.where.split(" [")[0] for c in candidates}
    assert {"starter/train.py", "starter/instance/detection.py", "data_scripts/cmp_facade.py"} <= wheres
    read = {where.split(" [")[0] for where in _code_texts(bundle)}  # a notebook may define no public function
    assert {f"notebooks/{name}/{name}.ipynb" for name in assignment_names()} <= read
    graded = {s.name for name in assignment_names() for s in unit_symbols(name)}
    assert not [
        c for c in candidates if c.where.startswith("notebooks/") and c.name in graded
    ]  # stubs are not shipped code
    pairs = all_pairs(bundle, candidates)
    assert len(pairs) == sum(len(unit_symbols(name)) for name in assignment_names())
    assert sum(len(c) for c in pairs.values()) > 1000  # every fitting pair: what the exhaustive proof grades


def test_no_bundle_code_reads_like_a_solution(bundle):
    """Does any function, class or given cell of the bundle cover most of a unit's solution code (similarity engine)?"""
    assert textual_leaks(bundle) == []


def test_the_textual_scan_catches_planted_answers(bundle):
    """Would it flag a renamed solution function and an unused function whose body is an answer with new names?"""
    found = textual_leaks(planted_bundle(bundle))
    assert any(f.startswith("starter/planted.py: pairwise_overlap ~ instance/inst_mask_iou") for f in found), found
    assert any(f.startswith("starter/planted.py: _spare_epoch ~ unet/unet_train_epoch") for f in found), found


@pytest.mark.slow
def test_no_bundle_function_earns_a_units_points(bundle, tmp_path):
    """Plugged in as the student's answer, does any bundle function or class that answers the public check's call
    like the reference earn more than half of a unit's points from the hidden checks?"""
    pairs = all_pairs(bundle)
    kept = screened(pairs, screen(pairs, bundle, tmp_path / "screen"))
    assert sum(len(c) for c in kept.values()) >= 5, (
        "the screen let nothing through: the grading below would prove nothing"
    )
    assert behavioural_leaks(bundle, kept, tmp_path) == []


@pytest.mark.slow
def test_the_behavioural_scan_catches_a_planted_answer(bundle, tmp_path):
    """Would a starter function that is a unit's solution renamed pass the screen and be reported by the grading?"""
    files = planted_bundle(bundle)
    planted = [c for c in public_candidates(files) if c.where == "starter/planted.py"]
    assert [c.name for c in planted] == ["pairwise_overlap"]  # the unused one is private and fits nothing
    pairs = {s: c for s, c in fitting("instance", planted).items() if c}
    kept = screened(pairs, screen(pairs, files, tmp_path / "screen"))
    assert any(c for s, c in kept.items() if s.grade_id == "inst_mask_iou")
    found = behavioural_leaks(files, kept, tmp_path)
    assert len(found) == 1 and found[0].startswith(
        "inst_mask_iou: 1/1 by [('mask_iou', 'starter/planted.py: pairwise_overlap')]"
    ), found


@pytest.mark.proof
def test_no_bundle_function_earns_a_units_points_exhaustive(bundle, tmp_path):
    """Unscreened: does any bundle function or class fitting a unit's signature earn more than half its points?"""
    assert behavioural_leaks(bundle, all_pairs(bundle), tmp_path) == []
