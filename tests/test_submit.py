"""`python -m starter.submit`: validating completed notebooks and packing them into <student>.zip."""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

import starter.submit as submit
from grader.assignments import REPO_ROOT, assignment_names, cells_by_grade_id, load_assignment, nbgrader_meta
from grader.run.discovery import discover

SOLUTION = REPO_ROOT / "solutions" / "fcn" / "fcn.ipynb"
RELEASED = REPO_ROOT / "notebooks" / "fcn" / "fcn.ipynb"
FCN_UNITS = [u.grade_id for u in load_assignment("fcn").auto_units]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def save(notebook: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def graded_cell(notebook: dict, grade_id: str) -> dict:
    return cells_by_grade_id(notebook)[grade_id][0]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = submit.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_manifest_lists_every_assignment_without_solutions():
    """Does the shipped starter/assignments.json name every graded cell of every assignment?"""
    assignments = submit.load_assignments()
    assert sorted(assignments) == assignment_names()
    assert [u["grade_id"] for u in assignments["fcn"]["graded"]] == FCN_UNITS


def test_solution_notebook_is_packed_and_found_by_the_grader(tmp_path, capsys):
    """Does a complete notebook give <student>.zip with fcn/fcn.ipynb and a MANIFEST that `make grade` discovers?"""
    code, out, err = run(capsys, "--student", "alice", "--out", tmp_path / "zips", SOLUTION)
    assert code == 0, err
    archive = tmp_path / "zips" / "alice.zip"
    assert archive.is_file() and "alice.zip" in out
    with zipfile.ZipFile(archive) as bundle:
        assert sorted(bundle.namelist()) == ["MANIFEST.json", "fcn/fcn.ipynb"]
        manifest = json.loads(bundle.read("MANIFEST.json"))
        packed = bundle.read("fcn/fcn.ipynb")
    assert manifest["student_id"] == "alice" and manifest["created"]
    [entry] = manifest["files"]
    assert entry["path"] == "fcn/fcn.ipynb" and entry["sha256"] == hashlib.sha256(packed).hexdigest()
    assert entry["implemented"] == FCN_UNITS and entry["unimplemented"] == []
    assert cells_by_grade_id(json.loads(packed)).keys() == cells_by_grade_id(load(SOLUTION)).keys()

    jobs = discover([tmp_path / "zips"], None, tmp_path / "unpacked")
    assert [(job.student, job.assignment) for job in jobs] == [("alice", "fcn")]
    assert jobs[0].notebook.read_bytes() == packed


def test_untouched_notebook_is_refused_with_every_missing_unit(tmp_path, capsys):
    """Does the released (unanswered) notebook fail, naming every unimplemented graded cell, and write nothing?"""
    code, _, err = run(capsys, "--student", "bob", "--out", tmp_path, RELEASED)
    assert code == 1 and "NOT submitted" in err
    for grade_id in FCN_UNITS:
        assert grade_id in err
    assert not list(tmp_path.iterdir())


def test_partial_notebook_only_with_allow_incomplete(tmp_path, capsys):
    """Is a partly done notebook refused by default, and packed with --allow-incomplete (listing what is missing)?"""
    notebook = load(RELEASED)
    graded_cell(notebook, "fcn_bilinear")["source"] = graded_cell(load(SOLUTION), "fcn_bilinear")["source"]
    path = save(notebook, tmp_path / "work" / "fcn.ipynb")
    code, _, err = run(capsys, "--student", "carol", "--out", tmp_path / "out", path)
    assert (
        code == 1 and "fcn32s" in err and "fcn_bilinear" not in err.split("not implemented yet")[1].split("(finish")[0]
    )
    code, out, _ = run(capsys, "--student", "carol", "--out", tmp_path / "out", "--allow-incomplete", path)
    graded = [
        c
        for c in load(SOLUTION)["cells"]
        if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("solution")
    ]
    assert code == 0 and f"1/{len(graded)} graded cells implemented" in out
    with zipfile.ZipFile(tmp_path / "out" / "carol.zip") as bundle:
        entry = json.loads(bundle.read("MANIFEST.json"))["files"][0]
    assert entry["implemented"] == ["fcn_bilinear"] and "fcn8s" in entry["unimplemented"]


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("delete", "graded cell 'fcn16s' is missing"),
        ("duplicate", "graded cell 'fcn16s' appears 2 times"),
        ("markdown", "graded cell 'fcn16s' is missing"),
        ("syntax", "graded cell 'fcn16s' is not valid Python"),
    ],
)
def test_damaged_graded_cells_are_named(tmp_path, capsys, damage, expected):
    """Is a deleted, duplicated, converted or unparsable graded cell reported by its grade_id (even with --allow-incomplete)?"""
    notebook = load(SOLUTION)
    index = next(i for i, c in enumerate(notebook["cells"]) if nbgrader_meta(c).get("grade_id") == "fcn16s")
    if damage == "delete":
        del notebook["cells"][index]
    elif damage == "duplicate":
        notebook["cells"].insert(index, copy.deepcopy(notebook["cells"][index]))
    elif damage == "markdown":
        notebook["cells"][index]["cell_type"] = "markdown"
    else:
        notebook["cells"][index]["source"] = "def forward(self:\n    pass\n"
    path = save(notebook, tmp_path / "fcn.ipynb")
    code, _, err = run(capsys, "--student", "dave", "--out", tmp_path / "out", "--allow-incomplete", path)
    assert code == 1 and expected in err
    assert not (tmp_path / "out").exists()


def test_unreadable_and_unknown_files(tmp_path, capsys):
    """Does a broken file or a notebook of no known assignment fail with a message saying so?"""
    broken = tmp_path / "fcn.ipynb"
    broken.write_text('{"cells": [', encoding="utf-8")
    code, _, err = run(capsys, "--student", "erin", "--out", tmp_path, broken)
    assert code == 1 and "not valid notebook JSON" in err
    stranger = save({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, tmp_path / "mine.ipynb")
    code, _, err = run(capsys, "--student", "erin", "--out", tmp_path, stranger)
    assert code == 1 and "not one of this kit's assignments" in err


def test_huge_outputs_are_removed_from_the_packed_copy_only(tmp_path, capsys):
    """Are large images and megabyte outputs dropped from the zip while the student's file stays as it was?"""
    notebook = load(SOLUTION)
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code" and not nbgrader_meta(c))
    cell["outputs"] = [
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"image/png": "A" * 2_000_000, "text/plain": "<Figure>"},
        },
        {"output_type": "stream", "name": "stdout", "text": "x" * 3_000_000},
        {"output_type": "stream", "name": "stdout", "text": "small and kept\n"},
    ]
    path = save(notebook, tmp_path / "fcn.ipynb")
    original = path.read_bytes()
    code, out, err = run(capsys, "--student", "frank", "--out", tmp_path / "out", path)
    assert code == 0, err
    assert "2 large output(s) removed" in out and path.read_bytes() == original
    with zipfile.ZipFile(tmp_path / "out" / "frank.zip") as bundle:
        packed = bundle.read("fcn/fcn.ipynb")
    assert len(packed) < 1_000_000
    outputs = next(c for c in json.loads(packed)["cells"] if c.get("id") == cell.get("id"))["outputs"]
    assert "image/png" not in outputs[0]["data"] and "removed by starter.submit" in outputs[1]["text"]
    assert outputs[2]["text"] == "small and kept\n"


def test_default_discovery_takes_started_notebooks(tmp_path, capsys, monkeypatch):
    """Without file arguments, are started notebooks of the kit packed, untouched ones skipped, and the zip written to the kit folder?"""
    kit = tmp_path / "segkit"
    save(load(SOLUTION), kit / "notebooks" / "fcn" / "fcn.ipynb")
    save(load(REPO_ROOT / "notebooks" / "cam" / "cam.ipynb"), kit / "notebooks" / "cam" / "cam.ipynb")
    monkeypatch.setattr(submit, "KIT_ROOT", kit)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "--student", "grace")
    assert code == 0, err
    assert "cam: not started" in out
    with zipfile.ZipFile(kit / "grace.zip") as bundle:
        assert sorted(bundle.namelist()) == ["MANIFEST.json", "fcn/fcn.ipynb"]

    # A renamed copy of the same assignment next to it: ambiguous, so name the one to submit.
    save(load(SOLUTION), kit / "Copy of fcn.ipynb")
    monkeypatch.chdir(kit)
    code, _, err = run(capsys, "--student", "grace")
    assert code == 1 and "several notebooks found" in err and "Copy of fcn.ipynb" in err
    code, _, err = run(capsys, "--student", "grace", "--assignment", "cam")
    assert code == 1 and "no started notebook found" in err  # cam was asked for but has nothing implemented
    code, _, _ = run(capsys, "--check", "Copy of fcn.ipynb")
    assert code == 0


def test_student_id_is_required_and_safe(tmp_path, capsys, monkeypatch):
    """Is a missing or path-like student id refused before anything is written?"""
    monkeypatch.delenv(submit.ENV_STUDENT, raising=False)
    for argv in ([SOLUTION], ["--student", "../evil", SOLUTION], ["--student", "a b", SOLUTION]):
        with pytest.raises(SystemExit) as exit_info:
            submit.main(["--out", str(tmp_path), *map(str, argv)])
        assert exit_info.value.code == 2
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv(submit.ENV_STUDENT, "henry.h-1")
    assert submit.main(["--out", str(tmp_path), str(SOLUTION)]) == 0
    assert (tmp_path / "henry.h-1.zip").is_file()


def test_check_only_writes_nothing(tmp_path, capsys):
    """Does --check validate without a student id and without writing a zip?"""
    code, out, _ = run(capsys, "--check", "--out", tmp_path, SOLUTION)
    assert code == 0 and "no zip written" in out and not list(tmp_path.iterdir())


def test_a_failed_submit_sets_an_older_zip_aside_and_counts_only_sound_cells(tmp_path, capsys):
    """After a refused notebook, is an older <student>.zip renamed aside (so it cannot be uploaded by
    mistake), and does the status line count only graded cells present once and implemented?"""
    out = tmp_path / "out"
    assert run(capsys, "--student", "alice", "--out", out, SOLUTION)[0] == 0
    notebook = load(SOLUTION)
    index = next(i for i, c in enumerate(notebook["cells"]) if nbgrader_meta(c).get("grade_id") == "fcn16s")
    notebook["cells"].insert(index, copy.deepcopy(notebook["cells"][index]))
    code, stdout, err = run(capsys, "--student", "alice", "--out", out, save(notebook, tmp_path / "fcn.ipynb"))
    assert code == 1 and "NOT submitted" in err and "alice.zip.old" in err
    assert not (out / "alice.zip").exists() and (out / "alice.zip.old").is_file()
    assert f"{len(FCN_UNITS) - 1}/{len(FCN_UNITS)} graded cells implemented" in stdout
    assert "1 missing, duplicated or not valid Python" in stdout


def test_student_ids_follow_the_one_shared_rule():
    """Do starter.submit and the grader's intake share one id rule: e-mail-like ids pass, paths and spaces do not?"""
    from starter.ids import StudentIdError, check_student_id, normalise_student_id

    for good in ("alice", "henry.h-1", "jane@uni.edu", "s_1234"):
        assert check_student_id(good) == good
    for bad in ("", "..", ".hidden", "a b", "../evil", "-rf", "x" * 65, "caf\u00e9"):
        with pytest.raises(StudentIdError):
            check_student_id(bad)
    assert normalise_student_id("Zo\u00eb O'Neil_4711") == "Zoe_O_Neil_4711"
    assert normalise_student_id("..") is None
