"""The Gradescope autograder zip: its contents, the submission staging, and `run_autograder`
run for real on a temporary tree that mimics Gradescope's /autograder (AUTOGRADER_ROOT)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from grader.assignments import REPO_ROOT, load_assignment
from integrations.gradescope import MAX_RESULT_FILE_BYTES, gradescope_results, stage
from segkit.build import gradescope_zip
from segkit.build.gradescope_zip import KIT_FILES, main

RESULTS_SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())
CHEAP = "patches"  # the cheapest assignment to grade (~10-20 s)


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist") / f"gradescope-{CHEAP}.zip"
    assert main(["--assignment", CHEAP, "--out", str(out)]) == 0
    return out


def _solution_bytes() -> bytes:
    return (REPO_ROOT / "solutions" / CHEAP / f"{CHEAP}.ipynb").read_bytes()


def test_zip_has_gradescope_layout(autograder_zip):
    """setup.sh and run_autograder at the root (executable), the kit below, only this assignment's secrets."""
    with zipfile.ZipFile(autograder_zip) as bundle:
        modes = {info.filename: info.external_attr >> 16 for info in bundle.infolist()}
        run_script = bundle.read("run_autograder").decode()
        setup_script = bundle.read("setup.sh").decode()
        manifest = json.loads(bundle.read("segkit-gradescope.json"))
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    assert f"SEGKIT_ASSIGNMENTS:-{CHEAP}}}" in run_script
    assert "@VENV@" not in run_script + setup_script and "@ASSIGNMENTS@" not in run_script
    assert "requirements-lock.txt" in setup_script and "useradd" in setup_script
    assert manifest["assignments"] == [CHEAP]
    assert manifest["total_max_points"] == load_assignment(CHEAP).max_points


def test_zip_carries_the_engine_starter_and_one_assignment_only(autograder_zip):
    """Is the zip exactly the engine, starter, the integrations, the chosen assignment's grading files (with the
    shared hidden checks they import) and the scripts: no build or proof tool, no example bugs or correct
    alternatives, no other assignment's checks or solution?"""
    with zipfile.ZipFile(autograder_zip) as bundle:
        names = set(bundle.namelist())

    def tracked(folder):
        return {
            p.relative_to(REPO_ROOT).as_posix()
            for p in (REPO_ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    spec = load_assignment(CHEAP)
    expected = {
        "setup.sh",
        "run_autograder",
        "segkit-gradescope.json",
        *tracked("grader"),
        *tracked("starter"),
        *tracked("integrations"),
        *(
            p.relative_to(REPO_ROOT).as_posix()
            for p in (spec.folder / "assignment.toml", spec.checks_path, spec.solution_path, spec.release_path)
        ),
        "assignments/_shared/metric_checks.py",  # the shared hidden checks that patches' checks import
        *(f for f in KIT_FILES if (REPO_ROOT / f).exists()),
    }
    assert names == expected, {"unexpected": sorted(names - expected), "missing": sorted(expected - names)}
    assert not any(
        n.startswith(("segkit/", "tests/", "bench/")) or n.endswith(("examples.py", "alternatives.py")) for n in names
    )


def test_zip_is_reproducible(autograder_zip, tmp_path):
    """Does building twice give the same bytes (fixed timestamps, sorted members)?"""
    again = tmp_path / "again.zip"
    main(["--assignment", CHEAP, "--out", str(again)])
    assert again.read_bytes() == autograder_zip.read_bytes()


def _notebook_json(grade_ids=()) -> bytes:
    cells = [
        {"cell_type": "code", "source": "", "metadata": {"nbgrader": {"grade_id": g}}, "outputs": []} for g in grade_ids
    ]
    return json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {}}).encode()


def test_stage_finds_notebooks_in_every_upload_shape(tmp_path):
    """A single notebook, a renamed one, a starter.submit zip (packed or unpacked), a folder; never a symlink."""

    def staged(files: dict[str, bytes], assignments=(CHEAP,), links: dict[str, Path] | None = None):
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        submission = root / "submission"
        submission.mkdir(parents=True)
        for name, data in files.items():
            (submission / name).parent.mkdir(parents=True, exist_ok=True)
            (submission / name).write_bytes(data)
        for name, target in (links or {}).items():
            (submission / name).symlink_to(target)
        return stage(submission, list(assignments), root / "stage"), root / "stage"

    body = _solution_bytes()
    report, dest = staged({f"{CHEAP}.ipynb": body})
    assert report["assignments"][CHEAP]["source"] == f"{CHEAP}.ipynb"
    assert (dest / "submission" / CHEAP / f"{CHEAP}.ipynb").read_bytes() == body

    report, _ = staged({f"{CHEAP} (1).ipynb": body})  # browsers rename re-downloads
    assert (
        report["assignments"][CHEAP]["staged"]
        and "recognised by its graded cells" in report["assignments"][CHEAP]["note"]
    )

    report, _ = staged({f"{CHEAP}/{CHEAP}.ipynb": body, f"{CHEAP}/.ipynb_checkpoints/{CHEAP}-checkpoint.ipynb": b"x"})
    assert report["assignments"][CHEAP]["source"] == f"{CHEAP}/{CHEAP}.ipynb"

    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(f"{CHEAP}/{CHEAP}.ipynb", body)
        bundle.writestr("fcn/fcn.ipynb", b"{}")
    report, dest = staged({"submission.zip": archive.read_bytes()})
    assert report["assignments"][CHEAP]["source"] == f"submission.zip:{CHEAP}/{CHEAP}.ipynb"
    assert (dest / "submission" / CHEAP / f"{CHEAP}.ipynb").read_bytes() == body

    secret = tmp_path / "secret.ipynb"
    secret.write_bytes(body)
    report, _ = staged({}, links={f"{CHEAP}.ipynb": secret})
    assert not report["assignments"][CHEAP]["staged"], "a symlink must never be read"

    # Two assignments, notebooks named arbitrarily: recognised by their graded cells.
    fcn_ids = [u.grade_id for u in load_assignment("fcn").units][:2]
    cheap_ids = [u.grade_id for u in load_assignment(CHEAP).units][:2]
    report, _ = staged(
        {"a.ipynb": _notebook_json(fcn_ids), "b.ipynb": _notebook_json(cheap_ids)}, assignments=("fcn", CHEAP)
    )
    assert report["assignments"]["fcn"]["source"] == "a.ipynb"
    assert report["assignments"][CHEAP]["source"] == "b.ipynb"


def _valid_results(results: dict) -> dict:
    """results.json as Gradescope's specification describes it (tests/gradescope_results.schema.json)."""
    jsonschema.Draft202012Validator(RESULTS_SCHEMA).validate(results)
    return results


def test_stage_uses_the_intake_rules_of_make_grade(tmp_path):
    """Does staging open a zip inside a zip, grade the newest of two notebooks, and name the wrong
    assignment (the intake step of `make grade`, grader/intake.py)?"""
    body, older = _solution_bytes(), (REPO_ROOT / "notebooks" / CHEAP / f"{CHEAP}.ipynb").read_bytes()
    submission = tmp_path / "submission"
    submission.mkdir()
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as bundle:
        bundle.writestr(f"work/{CHEAP}.ipynb", body)
    with zipfile.ZipFile(submission / "upload.zip", "w") as bundle:
        bundle.writestr(f"old/{CHEAP}.ipynb", older)  # earlier in the zip: older
        bundle.writestr("inner.zip", inner.read_bytes())
        bundle.writestr("__MACOSX/._inner.zip", b"\0")
    (submission / "mine.ipynb").write_bytes((REPO_ROOT / "solutions" / "fcn" / "fcn.ipynb").read_bytes())
    report = stage(submission, [CHEAP], tmp_path / "stage")
    entry = report["assignments"][CHEAP]
    assert entry["source"] == f"upload.zip:inner.zip:work/{CHEAP}.ipynb"
    assert f"upload.zip:old/{CHEAP}.ipynb" in entry["note"]
    assert (tmp_path / "stage" / "submission" / CHEAP / f"{CHEAP}.ipynb").read_bytes() == body
    assert any("this is the fcn notebook" in found for found in report["found"])
    assert {row["outcome"] for row in report["intake"]} == {"graded", "superseded", "ignored", "rejected"}


def test_results_for_missing_notebook_and_failed_grading(tmp_path):
    """Score 0 with a message saying what to upload, or that grading failed (not a low score)."""
    results = gradescope_results(tmp_path, [CHEAP], {"found": ["notes.txt.ipynb"], "assignments": {}})
    assert results["score"] == 0 and f"{CHEAP}.ipynb" in _valid_results(results)["output"]
    assert results["tests"][0]["max_score"] == load_assignment(CHEAP).max_points
    failed = gradescope_results(tmp_path, [CHEAP], {"assignments": {CHEAP: {"staged": True, "source": "x.ipynb"}}})
    assert failed["score"] == 0 and "could not grade" in _valid_results(failed)["output"]


def test_oversized_grader_results_are_not_read(tmp_path):
    """Is a per-assignment results.json larger than any the grader writes treated as no result (read
    with a bound, never whole), and is each test output of a real one cut again?"""
    path = tmp_path / "gradescope" / CHEAP / "submission" / "results.json"
    path.parent.mkdir(parents=True)
    staged = {"assignments": {CHEAP: {"staged": True, "source": "x.ipynb"}}}
    path.write_text(json.dumps({"score": 1, "tests": [{"score": 1, "max_score": 1, "output": "x" * 10**6}]}))
    test = _valid_results(gradescope_results(tmp_path, [CHEAP], staged))["tests"][0]
    assert len(test["output"]) < 5000 and test["output_format"] == "text"
    path.write_text(json.dumps({"score": 16, "tests": [], "output": "x" * (MAX_RESULT_FILE_BYTES + 1)}))
    assert gradescope_results(tmp_path, [CHEAP], staged)["score"] == 0


@pytest.mark.parametrize(
    "spelling",
    [
        ["--grader-args", "--unsafe-no-sandbox"],
        ["--grader-args=--unsafe-no-sandbox"],
        ["--grader-args", "--memory-mb 3000"],
    ],
)
def test_every_grader_args_spelling_is_taken(spelling, monkeypatch, tmp_path):
    """Does `segkit gradescope` take the documented spellings of --grader-args, a lone dashed option too
    (argparse alone stops with "expected one argument")?"""
    taken = {}

    def build_zip(assignments, out, venv, grader_args):  # records the options instead of zipping
        taken["args"] = grader_args
        Path(out).write_bytes(b"")
        return {"total_max_points": 1, "manual_points": {}}

    monkeypatch.setattr(gradescope_zip, "build_zip", build_zip)
    assert main(["--assignment", CHEAP, "--out", str(tmp_path / "x.zip"), *spelling]) == 0
    assert taken["args"] == spelling[-1].removeprefix("--grader-args=")


def test_make_passes_grader_args_joined():
    """Do `make gradescope` and `make slurm` pass GRADER_ARGS as --grader-args=..., so that
    GRADER_ARGS=--unsafe-no-sandbox (the guide's spelling) reaches the option?"""
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert makefile.count('--grader-args="$(GRADER_ARGS)"') == 2 and '--grader-args "$(GRADER_ARGS)"' not in makefile


def _fake_autograder(tmp_path: Path, autograder_zip: Path, files: dict[str, bytes]) -> Path:
    """A directory tree shaped like Gradescope's /autograder after setup.sh."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(autograder_zip) as bundle:
        bundle.extractall(root / "source")
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")  # where Gradescope puts it
    os.chmod(root / "run_autograder", 0o755)
    (root / "submission").mkdir()
    (root / "results").mkdir()
    for name, data in files.items():
        (root / "submission" / name).write_bytes(data)
    return root


def _run_autograder(root: Path, **env_extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"AUTOGRADER_ROOT": str(root), "SEGKIT_PYTHON": sys.executable, **env_extra})
    run = subprocess.run(
        ["bash", str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = _valid_results(json.loads((root / "results" / "results.json").read_text()))
    assert isinstance(results["score"], (int, float)) and isinstance(results["output"], str)
    for test in results["tests"]:
        assert {"name", "score", "max_score", "output"} <= set(test)
        assert 0 <= test["score"] <= test["max_score"]
    return results | {"_stdout": run.stdout + run.stderr}


def _without_user_namespaces(tmp_path: Path) -> dict:
    """Environment of a container whose seccomp profile forbids user namespaces: bwrap cannot start."""
    folder = tmp_path / "fake-bin"
    folder.mkdir(mode=0o755, exist_ok=True)
    os.chmod(folder, 0o755)  # as root the worker's spare uid must be able to run it
    fake = folder / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    os.chmod(fake, 0o755)
    return {"SEGKIT_BWRAP": str(fake)}


def _with_first_unit_prefixed(prefix: str) -> bytes:
    notebook = json.loads(_solution_bytes())
    first = load_assignment(CHEAP).auto_units[0].grade_id
    for cell in notebook["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == first:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = prefix + source
    return json.dumps(notebook).encode()


def _check_full_marks(tmp_path: Path, autograder_zip: Path, env: dict) -> str:
    root = _fake_autograder(tmp_path / "solution", autograder_zip, {f"{CHEAP}.ipynb": _solution_bytes()})
    results = _run_autograder(root, **env)
    max_points = load_assignment(CHEAP).max_points
    assert results["score"] == pytest.approx(max_points), results["_stdout"][-3000:]
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(max_points)
    assert f"graded {CHEAP}.ipynb" in results["output"]
    assert results["stdout_visibility"] == "hidden"
    per_submission = root / "results" / "grades" / "gradescope" / CHEAP / "submission" / "results.json"
    assert json.loads(per_submission.read_text())["tests"] == results["tests"]
    return (root / "results" / "grades" / "report.md").read_text()


@pytest.mark.slow
def test_run_autograder_full_marks(tmp_path, autograder_zip):
    """Does run_autograder, on a copy of /autograder, give the example solution full marks?"""
    report = _check_full_marks(tmp_path, autograder_zip, {})
    assert "## Protections around student code" in report


@pytest.mark.slow
def test_run_autograder_refuses_without_a_sandbox(tmp_path, autograder_zip):
    """In a container that forbids user namespaces, does run_autograder refuse to run the notebook and
    tell the student it is not their fault; and does GRADER_ARGS=--unsafe-no-sandbox grade anyway, saying so?"""
    env = _without_user_namespaces(tmp_path)
    root = _fake_autograder(tmp_path / "refused", autograder_zip, {f"{CHEAP}.ipynb": _solution_bytes()})
    results = _run_autograder(root, **env)
    assert results["score"] == 0 and "could not start its sandbox" in results["output"]
    assert "refusing to grade" in results["_stdout"], results["_stdout"]
    assert "No permissions to create new namespace" in results["_stdout"], results["_stdout"]
    assert not (root / "results" / "grades" / "results").exists()

    report = _check_full_marks(
        tmp_path / "unsafe", autograder_zip, {**env, "SEGKIT_GRADER_ARGS": "--unsafe-no-sandbox"}
    )
    assert "unsafe-no-sandbox" in report and "NOT active: `filesystem_allowlist`" in report
    grades = tmp_path / "unsafe" / "solution" / "autograder" / "results" / "grades"
    for path in (f"feedback/submission/{CHEAP}.md", f"feedback/submission/{CHEAP}.html"):
        assert "unsafe-no-sandbox" in (grades / path).read_text(), path
    result = json.loads((grades / "results" / CHEAP / "submission.json").read_text())
    assert result["unsafe_no_sandbox"] is True and "filesystem_allowlist" not in result["protections"]


@pytest.mark.slow
def test_run_autograder_garbage_scores_zero_with_message(tmp_path, autograder_zip):
    """A notebook that is not JSON, no notebook at all, or a broken environment: score 0 and a message."""
    root = _fake_autograder(tmp_path / "garbage", autograder_zip, {f"{CHEAP}.ipynb": b"\x00not a notebook{"})
    results = _run_autograder(root)
    assert results["score"] == 0
    assert "not valid notebook JSON" in results["output"] + json.dumps(results["tests"])

    root = _fake_autograder(tmp_path / "none", autograder_zip, {"answers.txt": b"hello"})
    results = _run_autograder(root)
    assert results["score"] == 0 and "No notebook" in results["output"] and "answers.txt" not in results["output"]

    root = _fake_autograder(tmp_path / "broken", autograder_zip, {f"{CHEAP}.ipynb": _solution_bytes()})
    results = _run_autograder(root, SEGKIT_PYTHON=str(tmp_path / "no-python"))
    assert results["score"] == 0 and "misconfigured" in results["output"]


@pytest.mark.slow
def test_run_autograder_grades_in_the_landlock_layer_without_user_namespaces(autograder_zip):
    """In a container where no user namespace can be made (Gradescope's, Docker's default), run as root, does
    run_autograder grade in the Landlock layer: the solution full marks, the all-bugs example less, and do the
    report and the student's results say which protections that layer does not give?"""
    import tempfile

    from sandbox_helpers import as_user_command, without_user_namespaces

    from segkit.proof.examples import example_notebooks

    if os.geteuid() != 0:
        pytest.skip("disabling user namespaces in a nested one needs root (CI runs as root)")
    base = Path(tempfile.mkdtemp(prefix="segkit-gs-landlock-"))
    os.chmod(base, 0o755)  # the worker's spare uid must reach the kit's starter copy below it
    try:
        buggy = json.dumps(example_notebooks(CHEAP)["example-buggy"]).encode()
        scores = {}
        for name, notebook in (("solution", _solution_bytes()), ("buggy", buggy)):
            root = _fake_autograder(base / name, autograder_zip, {f"{CHEAP}.ipynb": notebook})
            env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8", "AUTOGRADER_ROOT": str(root)}
            env["SEGKIT_PYTHON"] = sys.executable
            argv, stage = as_user_command(["bash", str(root / "run_autograder")], uid=0, env=env)
            try:
                run = subprocess.run(
                    without_user_namespaces(argv), cwd=root, env=env, capture_output=True, text=True, timeout=600
                )
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            results = _valid_results(json.loads((root / "results" / "results.json").read_text()))
            scores[name] = results["score"]
            report = (root / "results" / "grades" / "report.md").read_text()
            assert "Landlock" in report and "NOT active: `pid_namespace`" in report, report[-3000:]
            assert "not active: network_namespace, pid_namespace" in results["output"]
        assert scores["solution"] == pytest.approx(load_assignment(CHEAP).max_points)
        assert 0 < scores["buggy"] < scores["solution"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
