"""An assignment is one folder: is every assignment complete, does nothing generic name one, and does
`segkit new-assignment` give a TA a new assignment that passes the kit's checks?"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_helpers import copy_kit

from grader.assignments import REPO_ROOT, AssignmentConfigError, assignment_names, read_config
from segkit.build import completeness

ASSIGNMENTS = assignment_names()
# Folders whose modules serve every assignment: none of them may name one.
GENERIC_FOLDERS = ("grader", "segkit", "starter", "data_scripts")


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_assignment_is_complete(name):
    """Does the assignment have, for every graded unit, a public check, hidden checks worth the notebook's points,
    an example bug and attack and two correct alternatives, and a declaration naming only what exists?"""
    assert completeness.problems(name) == []


def _kit_copy(tmp_path: Path) -> Path:
    kit = tmp_path / "kit"
    copy_kit(kit)
    return kit


def _problems_in(kit: Path, name: str) -> list[str]:
    code = (
        f"import json, sys; from segkit.build import completeness; print(json.dumps(completeness.problems({name!r})))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=kit,
        env=dict(os.environ, PYTHONPATH=str(kit)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_completeness_names_each_missing_piece(tmp_path):
    """When a piece is missing (a hidden check, an example bug, an alternative, a public check cell) or the points
    disagree, does the completeness check say which piece of which unit?"""
    name = ASSIGNMENTS[0]
    kit = _kit_copy(tmp_path)
    folder = kit / "assignments" / name
    checks = folder / f"test_{name}.py"
    source = checks.read_text(encoding="utf-8")
    tree = ast.parse(source)
    unit_of = {}  # hidden check function -> its grade_id
    for node in tree.body:
        for decorator in getattr(node, "decorator_list", []):
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "unit":
                unit_of[node] = ast.literal_eval(decorator.args[0])
    victim, other = list(dict.fromkeys(unit_of.values()))[:2]
    # Drop every hidden check of the first unit; give the second unit half a point too many.
    lines = source.splitlines(keepends=True)
    for node in sorted((n for n, g in unit_of.items() if g == victim), key=lambda n: -n.lineno):
        del lines[min(d.lineno for d in node.decorator_list) - 1 : node.end_lineno]
    lines.append(f'\n\n@unit("{other}", points=0.5, message="extra")\ndef test_extra_check(sub, ref):\n    pass\n')
    checks.write_text("".join(lines), encoding="utf-8")
    examples = folder / "examples.py"
    examples.write_text(
        examples.read_text(encoding="utf-8").replace(f'"{victim}":', '"renamed_unit":', 1), encoding="utf-8"
    )
    (folder / "alternatives.py").unlink()

    found = "\n".join(_problems_in(kit, name))
    assert f"unit {victim}: no hidden check" in found
    assert f"unit {other}: the hidden checks give" in found
    assert f"unit {victim}: needs an example bug" in found
    assert "BUGS names 'renamed_unit', which is not a graded unit" in found
    assert f"assignments/{name}/alternatives.py is missing" in found


def test_assignment_toml_is_strict(tmp_path):
    """Does a misspelt key or a missing title in assignment.toml stop with the file and key named?"""
    path = tmp_path / "assignment.toml"
    path.write_text('title = "X"\n[grading]\nexpensive_unit = ["a"]\n', encoding="utf-8")
    with pytest.raises(AssignmentConfigError, match=r"\[grading\]: unknown key\(s\) expensive_unit"):
        read_config(path)
    path.write_text("datasets = []\n", encoding="utf-8")
    with pytest.raises(AssignmentConfigError, match="`title`"):
        read_config(path)


def test_results_table_is_read_strictly(tmp_path):
    """Does [results] say what make results runs, and stop on a misspelt key or an empty table?"""
    path = tmp_path / "assignment.toml"
    path.write_text(
        'title = "X"\n[results]\ndataset = "cmp_facade"\nneeds_weights = ["B"]\n'
        '[[results.published]]\nexperiment = "A"\nvalue = 0.48\nwhat = "seeds"\n',
        encoding="utf-8",
    )
    results = read_config(path).results
    assert results.dataset == "cmp_facade" and results.needs_weights == ("B",)
    assert [(p.experiment, p.value) for p in results.published] == [("A", 0.48)]
    path.write_text('title = "X"\n[results]\ndatset = "cmp_facade"\n', encoding="utf-8")
    with pytest.raises(AssignmentConfigError, match=r"\[results\]: unknown key\(s\) datset"):
        read_config(path)
    path.write_text('title = "X"\n[results]\nneeds_weights = []\n', encoding="utf-8")
    with pytest.raises(AssignmentConfigError, match="`dataset`"):
        read_config(path)


def _string_constants(path: Path):
    """(line, value) of every string literal that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def places_naming_an_assignment(root: Path = REPO_ROOT, names: list[str] = ASSIGNMENTS) -> list[str]:
    """Code in the generic folders that names an assignment: a string that is the name, or holds it as a path or
    module part (`solutions/fcn/`, `checks.fcn`, `test_fcn`), or a backquoted mention in generated text."""
    alternatives = "|".join(map(re.escape, names))
    pattern = re.compile(rf"(^|[/.`_])({alternatives})([/.`]|$)")
    found = []
    for folder in GENERIC_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            for line, value in _string_constants(path):
                if value in names or pattern.search(value):
                    found.append(f"{path.relative_to(root)}:{line}: {value[:60]!r}")
    return found


def test_no_generic_module_names_an_assignment():
    """Does the engine, the build and proof tools, starter and the data scripts work for any assignment, naming none?"""
    assert places_naming_an_assignment() == []


def test_the_naming_scan_finds_a_named_assignment(tmp_path):
    """Would the scan above catch a generic module that names an assignment?"""
    for folder in GENERIC_FOLDERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "grader" / "leak.py").write_text(
        f'"""Docstrings may mention {ASSIGNMENTS[0]}."""\n'
        f'TABLE = {{"{ASSIGNMENTS[0]}": 1}}\n'
        f'PATH = "solutions/{ASSIGNMENTS[0]}/x.ipynb"\n',
        encoding="utf-8",
    )
    assert len(places_naming_an_assignment(tmp_path)) == 2


@pytest.mark.slow
def test_new_assignment_passes_the_kits_checks(tmp_path):
    """Following docs/adding-an-assignment.md, does `segkit new-assignment demo` in a copy of the kit give an assignment
    that is complete, whose notebooks do not drift, whose solution runs in fast mode and passes its public check, and
    that the sandboxed grader grades right (solution and both alternatives full marks, the bug and the attack lose)?"""
    kit = _kit_copy(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(kit))

    def segkit(*arguments, timeout=600):
        run = subprocess.run(
            [sys.executable, "-m", "segkit", *arguments],
            cwd=kit,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout

    segkit("new-assignment", "demo", "--title", "Demo")
    assert (kit / "notebooks" / "demo" / "demo.ipynb").is_file()
    assert "demo" in json.loads((kit / "starter" / "assignments.json").read_text())["assignments"]
    assert f"{len(ASSIGNMENTS) + 1} of {len(ASSIGNMENTS) + 1} assignments complete" in segkit("check")
    # A second scaffold of the same name writes nothing.
    again = subprocess.run(
        [sys.executable, "-m", "segkit", "new-assignment", "demo"],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and "exists already" in again.stderr

    # The kit's own notebook tests, on the new assignment only (stubs, public check, fast-mode execution).
    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_notebooks.py",
            "tests/test_assignments.py",
            "-k",
            "demo and not new_assignment",
        ],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tests.returncode == 0 and " passed" in tests.stdout, tests.stdout[-3000:]

    # Grade the bundled examples and both alternatives of the new assignment in the sandbox.
    alternatives = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from segkit.proof.alternatives import alternative_notebook; "
            "from starter.common import write_notebook; from pathlib import Path\n"
            "for k in (0, 1): write_notebook(Path(sys.argv[1]) / f'alternative-{k}' / 'demo' / 'demo.ipynb', "
            "alternative_notebook('demo', k))",
            str(kit / "build" / "examples" / "submitted"),
        ],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert alternatives.returncode == 0, alternatives.stderr
    segkit("grade", "--assignment", "demo", "--out", str(tmp_path / "grades"), "-j", "2")
    totals = {
        path.stem: json.loads(path.read_text())["total"]
        for path in (tmp_path / "grades" / "results" / "demo").glob("*.json")
    }
    assert totals == {
        "example-solution": 2,
        "alternative-0": 2,
        "alternative-1": 2,
        "example-buggy": 1,
        "example-untouched": 0,
        "example-hostile": 0,
    }, totals
    shutil.rmtree(kit / "build", ignore_errors=True)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _engine_imports_of(packages: set[str], root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """The engine's modules (grader/, subpackages included) that import one of `packages`, with those imports."""
    offending = {}
    for path in sorted((root / "grader").rglob("*.py")):
        name = path.relative_to(root).as_posix()
        found = sorted(m for m in _imported_modules(path) if m.split(".")[0] in packages)
        if found:
            offending[name] = found
    return offending


def test_engine_never_imports_a_build_or_proof_tool():
    """Does the grading engine (grader/) import only itself, starter and third-party code, never segkit/?"""
    assert _engine_imports_of({"segkit"}) == {}


def test_engine_imports_no_integration():
    """Does the engine (grader/) import none of integrations/ (collect, gradebook, Gradescope), which import it?"""
    assert _engine_imports_of({"integrations"}) == {}


def test_the_integration_scan_finds_an_engine_module_importing_one(tmp_path):
    """Would the scan above catch an engine module, in a subpackage too, that imports an integration?"""
    (tmp_path / "grader" / "run").mkdir(parents=True)
    (tmp_path / "grader" / "run" / "leak.py").write_text("from integrations.gradebook import main\n", encoding="utf-8")
    assert _engine_imports_of({"integrations"}, tmp_path) == {"grader/run/leak.py": ["integrations.gradebook"]}


def test_discovery_store_and_collect_import_no_torch():
    """Do finding submissions, the result cache and merging shard folders run without importing torch (or the
    grading processes' pytest), so `segkit collect` and the similarity report do not pay for it?"""
    code = (
        "import sys, grader.cli, grader.run.discovery, grader.run.store, integrations.collect; "
        "print(sorted(m for m in ('torch', 'numpy', 'pytest', 'grader.runner') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_grader_fingerprint_covers_the_inputs_of_a_grade_only():
    """Does the fingerprint that decides whether a cached grade is reused name the engine modules that compute
    grades, starter, the hidden checks and the modules they import, the notebooks and the lock file, and nothing
    of the integrations, the run library, the build and proof tools or another assignment?"""
    from grader.run.store import grade_inputs

    name, other = ASSIGNMENTS[0], ASSIGNMENTS[1]
    files = {path.relative_to(REPO_ROOT).as_posix() for path in grade_inputs(name)}
    assert {"grader/runner.py", "grader/harness.py", "grader/worker.py", "grader/sandbox/limits.py"} <= files
    assert "starter/common.py" in files and f"assignments/{name}/public_checks.py" in files
    assert {f"assignments/{name}/test_{name}.py", "requirements-lock.txt"} <= files
    assert {f"solutions/{name}/{name}.ipynb", f"notebooks/{name}/{name}.ipynb"} <= files
    assert f"assignments/{name}/assignment.toml" not in files  # its [grading] table only, parsed
    assert not [f for f in files if f.startswith(("segkit/", "tests/", "bench/", "integrations/", "grader/run/s"))]
    assert not [f for f in files if f.startswith((f"assignments/{other}/", f"solutions/{other}/"))]
    assert not {"grader/report.py", "grader/cli.py", "grader/intake.py"} & files
    assert not [f for f in files if f.startswith(f"assignments/{name}/") and "test_" not in f and "public" not in f]


def test_shared_check_modules_count_for_the_assignments_that_import_them():
    """Is a shared hidden-check module (assignments/_shared/metric_checks.py) among the inputs of the assignments
    whose checks import it, found by reading their imports, and is it among no other assignment's?"""
    from grader.run.store import check_files, spec_of

    shared = REPO_ROOT / "assignments" / "_shared" / "metric_checks.py"
    users = [a for a in ASSIGNMENTS if "_shared.metric_checks" in spec_of(a).checks_path.read_text()]
    assert users, "no assignment's checks import assignments/_shared/metric_checks.py"
    for name in ASSIGNMENTS:
        assert (shared in check_files(spec_of(name))) == (name in users), name


def test_the_shared_folder_is_no_assignment():
    """Does assignment discovery skip assignments/_shared/ (shared checks, no assignment.toml)?"""
    assert (REPO_ROOT / "assignments" / "_shared").is_dir()
    assert "_shared" not in ASSIGNMENTS


FINGERPRINT_ASSIGNMENT = "cam"  # any assignment: the edits below only touch tables and files every one has


@pytest.fixture(scope="module")
def fingerprint_kit(tmp_path_factory) -> Path:
    """A copy of what the fingerprint of FINGERPRINT_ASSIGNMENT reads (a few MB, no build output); each test
    edits one file and puts it back."""
    name, kit = FINGERPRINT_ASSIGNMENT, tmp_path_factory.mktemp("fingerprint") / "kit"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in (
        "grader",
        "starter",
        "integrations",
        f"assignments/{name}",
        f"solutions/{name}",
        f"notebooks/{name}",
    ):
        shutil.copytree(REPO_ROOT / folder, kit / folder, ignore=ignore)
    shutil.copy(REPO_ROOT / "requirements-lock.txt", kit / "requirements-lock.txt")
    return kit


def _append(text: str) -> str:
    return text + "\n# edited\n"


def _edit_toml(pattern: str, replacement: str):
    def edit(text: str) -> str:
        edited = re.sub(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert edited != text, f"{pattern!r} not in assignment.toml"
        return edited

    return edit


A = FINGERPRINT_ASSIGNMENT
MOVES_A_GRADE = {
    "a hidden check": (f"assignments/{A}/test_{A}.py", _append),
    "the solution": (f"solutions/{A}/{A}.ipynb", lambda text: text + "\n"),
    "the released notebook": (f"notebooks/{A}/{A}.ipynb", lambda text: text + "\n"),
    "the sandbox limits": ("grader/sandbox/limits.py", lambda text: text.replace("6144", "6000")),
    "a sandbox module": ("grader/sandbox/plan.py", _append),
    "the runner": ("grader/runner.py", _append),
    "a starter module": ("starter/common.py", _append),
    "the lock file": ("requirements-lock.txt", lambda text: text + "extra-package==1.0\n"),
    "the [grading] table": (
        f"assignments/{A}/assignment.toml",
        _edit_toml(r"^expensive_units = \[", 'expensive_units = ["x", '),
    ),
}
KEEPS_EVERY_GRADE = {
    "the report wording": ("grader/report.py", _append),
    "the nbgrader gradebook": ("integrations/gradebook.py", _append),
    "the Gradescope staging": ("integrations/gradescope.py", _append),
    "collect": ("integrations/collect.py", _append),
    "the run library": ("grader/run/grading.py", _append),
    "the CLI": ("grader/cli.py", _append),
    "the intake": ("grader/intake.py", _append),
    "the example bugs": (f"assignments/{A}/examples.py", _append),
    "the correct alternatives": (f"assignments/{A}/alternatives.py", _append),
    "the similarity corpus": (f"assignments/{A}/similarity_corpus/added.py", lambda text: "x = 1\n"),
    "the [results] table": (f"assignments/{A}/assignment.toml", _edit_toml(r"^\[results\]$", "[results]\n# edited")),
    "the [visibility] table": (f"assignments/{A}/assignment.toml", _edit_toml(r'^total = "\w+"', 'total = "visible"')),
    "the [proof] table": (f"assignments/{A}/assignment.toml", _edit_toml(r'^reason = "', 'reason = "edited: ')),
}


@functools.cache
def _pristine_fingerprint(kit: Path) -> str:
    from grader.run.store import grader_fingerprint

    return grader_fingerprint(A, kit)


def _fingerprint_after(kit: Path, relative: str, edit) -> tuple[str, str]:
    """The fingerprint before and after `edit` of the kit's file `relative` (then put back as it was)."""
    from grader.run.store import grader_fingerprint

    before = _pristine_fingerprint(kit)
    path = kit / relative
    original = path.read_bytes() if path.exists() else None
    try:
        path.write_text(edit(path.read_text() if original is not None else ""))
        return before, grader_fingerprint(A, kit)
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_bytes(original)


@pytest.mark.parametrize("change", sorted(MOVES_A_GRADE))
def test_a_change_that_can_move_a_grade_regrades(fingerprint_kit, change):
    """Does a change to an input of a grade (a hidden check, the solution, the sandbox, starter, the lock file,
    the [grading] table) change the fingerprint, so that every cached grade of the assignment is graded again?"""
    before, after = _fingerprint_after(fingerprint_kit, *MOVES_A_GRADE[change])
    assert before != after


@pytest.mark.parametrize("change", sorted(KEEPS_EVERY_GRADE))
def test_a_change_that_cannot_move_a_grade_reuses_every_cached_grade(fingerprint_kit, change):
    """Does a change that cannot move a grade (report wording, the gradebook and Gradescope integrations, collect,
    the CLI and run library, the intake, the proof tools' examples and alternatives, the similarity corpus, the
    [results], [visibility] and [proof] tables) keep the fingerprint?"""
    before, after = _fingerprint_after(fingerprint_kit, *KEEPS_EVERY_GRADE[change])
    assert before == after


def test_the_bundle_ships_the_shared_public_checks_and_never_the_hidden_ones(tmp_path):
    """Does the student bundle carry assignments/_shared/public_checks.py as starter/checks/shared.py, where the
    released assignments' checks find it, and nothing of the shared hidden checks?"""
    from segkit.build import release

    shared = REPO_ROOT / "assignments" / "_shared"
    files = release.bundle_files(["fcn"])
    assert files["starter/checks/shared.py"] == (shared / "public_checks.py").read_bytes()
    assert not [path for path in files if path.startswith(("assignments/", "grader/")) or "metric_checks" in path]
    hidden = [
        n.name for n in ast.parse((shared / "metric_checks.py").read_text()).body if isinstance(n, ast.FunctionDef)
    ]
    assert hidden and not [name for name in hidden if any(name.encode() in content for content in files.values())]
    for path, content in files.items():
        if path.startswith("starter/"):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_bytes(content)
    probe = "from starter.checks import CHECKS, _load_all; _load_all(); import sys; "
    probe += "print(sys.modules['starter.checks.shared'].__file__, 'fcn_confusion' in CHECKS)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.split() == [str(tmp_path / "starter" / "checks" / "shared.py"), "True"], out.stderr[-2000:]
