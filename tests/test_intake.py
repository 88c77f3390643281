"""Submission intake (grader/intake.py): every file a class hands in ends graded, superseded, ignored or
rejected with its reason. A fixture folder with every layout people produce is built in tmp by code;
the fast tests read it without grading; the slow ones grade it once as root and as an ordinary uid."""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from sandbox_helpers import TEST_UID, as_user_command, copy_kit

import starter.submit as submit
from grader.assignments import REPO_ROOT, assignment_names
from grader.intake import INTAKE_CSV, take_in
from starter.common import parse_notebook

ASSIGNMENT = "unet"
UNIT = "unet_iou"  # the cheapest unit to check: the graded runs check only it
SOLUTION = (REPO_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()
RELEASED = (REPO_ROOT / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()
OTHER = (REPO_ROOT / "solutions" / "instance" / "instance.ipynb").read_bytes()
BIG_OUTPUT_MB = 70


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def _with_outputs(notebook: bytes, megabytes: int) -> bytes:
    """The notebook with one huge text output, written without building the string in Python twice."""
    marker = '"__OUTPUT__"'
    data = json.loads(notebook)
    cell = next(c for c in data["cells"] if c["cell_type"] == "code")
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "__OUTPUT__"}]
    head, tail = json.dumps(data).split(marker)
    return head.encode() + b'"' + b"loss 0.123456\\n" * (megabytes * 1024 * 1024 // 15) + b'"' + tail.encode()


def _special_zips() -> dict[str, bytes]:
    link = zipfile.ZipInfo(f"{ASSIGNMENT}.ipynb")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr(link, b"/work/main/solutions/unet/unet.ipynb")
    zips = {"link": buffer.getvalue()}
    # Encrypted: the "encrypted" flag set in the local and the central header (zipfile never writes it).
    encrypted = bytearray(_zip({f"{ASSIGNMENT}.ipynb": SOLUTION}))
    central = encrypted.rindex(b"PK\x01\x02")
    encrypted[6] |= 0x1
    encrypted[central + 8] |= 0x1
    zips["enc"] = bytes(encrypted)
    # Not UTF-8: an ASCII name patched to Latin-1 bytes (zipfile then decodes it as cp437).
    zips["nonutf8"] = _zip({"cafXY.ipynb": SOLUTION}).replace(b"cafXY", b"caf\xe9\xff")
    zips["bomb"] = _zip({f"{ASSIGNMENT}.ipynb": bytes(40 * 1024 * 1024)}, zipfile.ZIP_BZIP2)
    return zips


def build_fixture(base: Path, big_outputs: bool = False) -> tuple[list[Path], dict[str, tuple[str, str, str]]]:
    """Submission folders in every layout, and what must become of each file:
    {label: (outcome, student, reason or assignment to find in the record)}."""
    subs, export = base / "submissions", base / "gradescope-export"
    # The canonical hand-ins, made by starter.submit: alice the solution, frank the released notebook.
    for student, notebook in (("alice", "solutions"), ("frank", "notebooks")):
        path = REPO_ROOT / notebook / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert submit.main(["--student", student, "--out", str(subs), "--allow-incomplete", str(path)]) == 0
    files: dict[Path, bytes] = {
        subs / "root.zip": _zip({f"{ASSIGNMENT}.ipynb": SOLUTION}),
        subs / "leo.zip": _zip({f"leo/{ASSIGNMENT}.ipynb": SOLUTION}),
        subs / "mac.zip": _zip({f"{ASSIGNMENT} (1).ipynb": SOLUTION, f"__MACOSX/._{ASSIGNMENT} (1).ipynb": b"\0\5"}),
        subs / "deep.zip": _zip({f"homework/notebooks/{ASSIGNMENT}/{ASSIGNMENT}.ipynb": SOLUTION}),
        subs / "nested.zip": _zip({"inner.zip": _zip({f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb": SOLUTION})}),
        subs / "slip.zip": _zip({f"../../{ASSIGNMENT}/{ASSIGNMENT}.ipynb": SOLUTION}),
        subs / "empty.zip": _zip({}),
        subs / "onlymac.zip": _zip({"__MACOSX/._x.ipynb": b"\0\5"}),
        subs / "dave.zip": _zip({f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb": RELEASED}),  # older: superseded
        subs / "dave.ipynb": SOLUTION,
        subs / "erin.zip": _zip({"frank.ipynb": SOLUTION}),  # named after another student: still erin's
        subs / "...ipynb": SOLUTION,
        subs / "bob smith.ipynb": SOLUTION,
        subs / "carol.ipynb": OTHER,
        subs / ".DS_Store": b"\0",
        subs / "notes.txt": b"grading notes",
        subs / f"smithjohn_late_1234_5678_{ASSIGNMENT}.ipynb": SOLUTION,
        subs / "Jane Doe_4711_assignsubmission_file_" / f"{ASSIGNMENT}.ipynb": SOLUTION,
        subs / f"HW2_jdoe_attempt_2024-03-01-10-00-00_{ASSIGNMENT}.ipynb": SOLUTION,
        subs / "HW2_jdoe_attempt_2024-03-01-10-00-00.txt": b"receipt",
        subs / "gina" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb": SOLUTION,
        subs / "gina" / ASSIGNMENT / "timestamp.txt": b"2024-03-01 10:00:00",
        subs / "gina" / ASSIGNMENT / ".ipynb_checkpoints" / f"{ASSIGNMENT}-checkpoint.ipynb": RELEASED,
        export / "submission_metadata.yml": (
            b"submission_111:\n  :submitters:\n  - :name: Sam Park\n    :sid: s111\n    :email: sam@uni.edu\n"
            b"  :created_at: 2024-03-01 10:00:00\n"
        ),
        export / "submission_111" / f"{ASSIGNMENT}.ipynb": SOLUTION,
        **{subs / f"{name}.zip": data for name, data in _special_zips().items()},
    }
    if big_outputs:
        files[subs / "hugo.ipynb"] = _with_outputs(SOLUTION, BIG_OUTPUT_MB)
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.utime(subs / "dave.zip", (1_700_000_000, 1_700_000_000))  # handed in first
    os.utime(subs / "dave.ipynb", (1_700_000_100, 1_700_000_100))
    a = ASSIGNMENT
    expected = {
        "alice.zip:unet/unet.ipynb": ("graded", "alice", a),
        "alice.zip:MANIFEST.json": ("ignored", "alice", "manifest"),
        "root.zip:unet.ipynb": ("graded", "root", a),
        "leo.zip:leo/unet.ipynb": ("graded", "leo", a),
        "mac.zip:unet (1).ipynb": ("graded", "mac", a),
        "mac.zip:__MACOSX/._unet (1).ipynb": ("ignored", "mac", "__MACOSX"),
        "deep.zip:homework/notebooks/unet/unet.ipynb": ("graded", "deep", a),
        "nested.zip:inner.zip:unet/unet.ipynb": ("graded", "nested", a),
        "slip.zip:../../unet/unet.ipynb": ("rejected", "slip", "zip-slip"),
        "empty.zip": ("rejected", "empty", "empty zip"),
        "onlymac.zip": ("rejected", "onlymac", "holds no notebook"),
        "onlymac.zip:__MACOSX/._x.ipynb": ("ignored", "onlymac", "__MACOSX"),
        "dave.zip:unet/unet.ipynb": ("superseded", "dave", "dave.ipynb"),
        "dave.ipynb": ("graded", "dave", a),
        "erin.zip:frank.ipynb": ("graded", "erin", a),
        "frank.zip:unet/unet.ipynb": ("graded", "frank", a),
        "frank.zip:MANIFEST.json": ("ignored", "frank", "manifest"),
        "...ipynb": ("rejected", "", "'..'"),
        "bob smith.ipynb": ("rejected", "", "'bob smith'"),
        "carol.ipynb": ("rejected", "carol", "this is the instance notebook"),
        ".DS_Store": ("ignored", "", "macOS"),
        "notes.txt": ("rejected", "", "not a notebook"),
        "smithjohn_late_1234_5678_unet.ipynb": ("graded", "smithjohn_1234", a),
        "Jane Doe_4711_assignsubmission_file_/unet.ipynb": ("graded", "Jane_Doe_4711", a),
        "HW2_jdoe_attempt_2024-03-01-10-00-00_unet.ipynb": ("graded", "jdoe", a),
        "HW2_jdoe_attempt_2024-03-01-10-00-00.txt": ("ignored", "", "Blackboard"),
        "gina/unet/unet.ipynb": ("graded", "gina", a),
        "gina/unet/timestamp.txt": ("ignored", "gina", "nbgrader"),
        "gina/unet/.ipynb_checkpoints/unet-checkpoint.ipynb": ("ignored", "gina", "checkpoints"),
        "submission_metadata.yml": ("ignored", "", "Gradescope"),
        "submission_111/unet.ipynb": ("graded", "s111", a),
        "link.zip:unet.ipynb": ("rejected", "link", "symbolic link"),
        "enc.zip:unet.ipynb": ("rejected", "enc", "encrypted"),
        "bomb.zip:unet.ipynb": ("rejected", "bomb", "zip bomb"),
        "nonutf8.zip:" + b"caf\xe9\xff".hex() + "2e6970796e62": ("rejected", "nonutf8", "not UTF-8"),
    }
    if big_outputs:
        expected["hugo.ipynb"] = ("graded", "hugo", "outputs dropped")
    # Two folders are taken in: each file is named with its folder's.
    gradescope = {"submission_metadata.yml", "submission_111/unet.ipynb"}
    expected = {f"{export.name if k in gradescope else subs.name}/{k}": v for k, v in expected.items()}
    return [subs, export], expected


def _checksums(folders: list[Path]) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() + f" {p.stat().st_mtime}"
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _check_records(records, expected: dict[str, tuple[str, str, str]]):
    by_file = {r.file: r for r in records}
    assert len(by_file) == len(records), "a file has more than one record"
    for label, (outcome, student, text) in expected.items():
        record = by_file.get(label)
        if "nonutf8.zip:" in label:
            record = next(r for f, r in by_file.items() if "nonutf8.zip:" in f)
        assert record is not None, f"{label} has no record: {sorted(by_file)}"
        assert record.outcome.value == outcome, (label, record)
        assert record.student == student, (label, record)
        assert text in record.reason or text == record.assignment, (label, record)
    assert len(records) == len(expected), sorted(set(by_file) - set(expected))


# -- fast: the intake rules, nothing graded ---------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_intake(tmp_path_factory):
    base = tmp_path_factory.mktemp("intake")
    paths, expected = build_fixture(base)
    before = _checksums(paths)
    intake = take_in(paths, assignment_names(), ASSIGNMENT, base / "out" / "submissions")
    return {"base": base, "paths": paths, "expected": expected, "before": before, "intake": intake}


def test_every_file_and_zip_member_ends_in_one_outcome_with_its_reason(fixture_intake):
    """Does every file under the submissions (and every zip member) end graded, superseded, ignored or
    rejected, as expected for each layout, with its reason?"""
    _check_records(fixture_intake["intake"].records, fixture_intake["expected"])


def test_graded_jobs_are_one_per_student_and_written_only_in_per_student_folders(fixture_intake):
    """Is each student graded once, is a zipped notebook written only to <unpack>/<student>/<a>/<a>.ipynb,
    and is the input left unchanged?"""
    intake, base = fixture_intake["intake"], fixture_intake["base"]
    students = [job.student for job in intake.jobs]
    graded = {v[1] for v in fixture_intake["expected"].values() if v[0] == "graded"}
    assert sorted(students) == sorted(graded)
    unpack = base / "out" / "submissions"
    written = sorted(p.relative_to(unpack).as_posix() for p in unpack.rglob("*") if p.is_file())
    assert all(re.fullmatch(rf"[^/]+/{ASSIGNMENT}/{ASSIGNMENT}\.ipynb", w) for w in written), written
    assert {w.split("/")[0] for w in written} <= graded
    assert sorted(p.name for p in base.iterdir()) == ["gradescope-export", "out", "submissions"]
    assert _checksums(fixture_intake["paths"]) == fixture_intake["before"]
    dave = next(job for job in intake.jobs if job.student == "dave")
    assert dave.notebook.read_bytes() == SOLUTION, "the newer of two hand-ins is graded"


def test_students_with_only_rejected_files_get_a_zero_row_with_the_reason(fixture_intake):
    """Does each student whose files were all rejected get one 0 row naming why, and nobody else?"""
    missing = {m.student: m.reason for m in fixture_intake["intake"].missing}
    assert set(missing) == {"carol", "slip", "empty", "onlymac", "link", "enc", "bomb", "nonutf8"}
    assert "this is the instance notebook" in missing["carol"] and f"ASSIGNMENT={ASSIGNMENT}" in missing["carol"]
    assert all(m.assignment == ASSIGNMENT for m in fixture_intake["intake"].missing)


def test_without_an_assignment_the_wrong_one_is_graded_as_what_it_is(tmp_path):
    """Is the instance notebook handed in among unet ones graded as instance when the run grades every assignment?"""
    (tmp_path / "carol.ipynb").write_bytes(OTHER)
    (tmp_path / "alice.ipynb").write_bytes(SOLUTION)
    intake = take_in([tmp_path], assignment_names())
    assert sorted((j.student, j.assignment) for j in intake.jobs) == [("alice", ASSIGNMENT), ("carol", "instance")]
    assert not intake.missing


def test_huge_outputs_are_dropped_and_only_cell_sources_are_capped():
    """Is a notebook over the size limit read with its outputs dropped (and refused only when its cells'
    sources are too large)?"""
    big = _with_outputs(SOLUTION, 1)
    read = parse_notebook(big, max_bytes=len(SOLUTION) + 1000)
    assert read.dropped_output_bytes > 1_000_000
    assert all(not c.get("outputs") for c in read.notebook["cells"])
    whole = parse_notebook(big, max_bytes=len(big))
    assert whole.dropped_output_bytes == 0 and any(c.get("outputs") for c in whole.notebook["cells"])
    with pytest.raises(ValueError, match="MB of text"):
        parse_notebook(big, max_bytes=1000)


def test_cli_writes_the_intake_table_and_refuses_nothing_silently(tmp_path, capsys):
    """Does a folder of only unusable files give intake.csv and a terminal line per rejected file?"""
    from grader.cli import main

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "...ipynb").write_bytes(SOLUTION)
    (tmp_path / "subs" / "empty.zip").write_bytes(_zip({}))
    # Nothing is graded here, so no sandbox is needed for it.
    argv = [str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--assignment", ASSIGNMENT, "--unsafe-no-sandbox"]
    code = main(argv)
    out = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "out" / INTAKE_CSV).open()))
    assert {r["file"]: r["outcome"] for r in rows} == {"...ipynb": "rejected", "empty.zip": "rejected"}
    assert "rejected: ...ipynb" in out and "rejected: empty.zip: an empty zip" in out
    assert code == 0 and "empty" in (tmp_path / "out" / "grades.csv").read_text()
    # A student ".." would have had its feedback written to out/unet.md, beside the run's own files.
    assert not list((tmp_path / "out").glob(f"{ASSIGNMENT}.*")) and not (tmp_path / "out" / "results.json").exists()
    assert sorted(p.name for p in (tmp_path / "out" / "feedback").iterdir()) == ["empty"]


# -- slow: the fixture folder graded once, as root and as an ordinary uid --------------------------
def _grade(who: str) -> dict:
    base = Path(tempfile.mkdtemp(prefix=f"segkit-intake-{who}-"))
    os.chmod(base, 0o755)
    try:
        paths, expected = build_fixture(base, big_outputs=True)
        graded = sorted({v[1] for v in expected.values() if v[0] == "graded"})
        units_map = base / "units-map.json"
        units_map.write_text(json.dumps({student: [UNIT] for student in graded}))
        kit, home, out = base / "kit", base / "home", base / "grades"
        copy_kit(kit)
        home.mkdir()
        if who == "user":
            subprocess.run(["chown", "-R", f"{TEST_UID}:{TEST_UID}", str(base)], check=True)
        before = _checksums(paths)
        top_before = sorted(p.name for p in base.iterdir())
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(kit), "LANG": "C.UTF-8"}
        argv = [sys.executable, "-m", "grader", *map(str, paths), "--out", str(out), "--assignment", ASSIGNMENT]
        argv += ["-j", "2", "--units-map", str(units_map), "--cell-timeout", "60", "--memory-mb", "3072"]
        stage = None
        if who == "user":
            argv, stage = as_user_command(argv, env=env)
        try:
            run = subprocess.run(argv, cwd=kit, env=env, capture_output=True, text=True, timeout=900)
        finally:
            if stage:
                shutil.rmtree(stage, ignore_errors=True)
        results = {
            json.loads(p.read_text())["student_id"]: json.loads(p.read_text())
            for p in (out / "results" / ASSIGNMENT).glob("*.json")
        }
        return {
            "run": run,
            "expected": expected,
            "graded": graded,
            "results": results,
            "intake": list(csv.DictReader((out / INTAKE_CSV).open())) if (out / INTAKE_CSV).exists() else [],
            "grades": list(csv.DictReader((out / "grades.csv").open())) if (out / "grades.csv").exists() else [],
            "report": (out / "report.md").read_text() if (out / "report.md").exists() else "",
            "written": sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()),
            "input_changed": _checksums(paths) != before,
            "top_changed": sorted(p.name for p in base.iterdir()) != sorted([*top_before, "grades"]),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


WHO = ["root", "user"]


@pytest.fixture(scope="module")
def graded_runs():
    from grader.sandbox import host_sandbox

    if not host_sandbox().ok:
        pytest.skip(f"this host cannot build the grading sandbox: {host_sandbox().reason}")
    who = WHO if os.geteuid() == 0 else ["root"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(who)) as pool:
        return dict(zip(who, pool.map(_grade, who)))


def _run(graded_runs, who):
    if who not in graded_runs:
        pytest.skip("running as an ordinary uid needs root")
    run = graded_runs[who]
    assert run["run"].returncode == 0, run["run"].stdout[-2000:] + run["run"].stderr[-3000:]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("who", WHO)
def test_graded_fixture_accounts_for_every_file(graded_runs, who):
    """Does the run's intake.csv give every file of the fixture its expected outcome and reason?"""
    run = _run(graded_runs, who)
    rows = {row["file"]: row for row in run["intake"]}
    for label, (outcome, student, text) in run["expected"].items():
        row = rows.get(label) or next(r for f, r in rows.items() if f.split(":")[0] == label.split(":")[0])
        assert (row["outcome"], row["student"]) == (outcome, student), (label, row)
        assert text in row["reason"] or text == row["assignment"], (label, row)
    assert len(rows) == len(run["expected"])


@pytest.mark.slow
@pytest.mark.parametrize("who", WHO)
def test_each_layout_scores_what_the_canonical_hand_in_scores(graded_runs, who):
    """Does every student graded from another layout get the score of the same notebook handed in as a
    starter.submit zip (alice: the solution, frank: the released notebook), outputs dropped included?"""
    run = _run(graded_runs, who)
    totals = {student: result["total"] for student, result in run["results"].items()}
    assert set(totals) == set(run["graded"])
    assert totals["alice"] > totals["frank"] == 0
    for student in set(run["graded"]) - {"frank"}:
        assert totals[student] == totals["alice"], (student, totals)


@pytest.mark.slow
@pytest.mark.parametrize("who", WHO)
def test_rejected_students_have_zero_rows_and_nothing_is_written_elsewhere(graded_runs, who):
    """Do students with only rejected files get a 0 row with the reason, is every output inside a
    per-student folder (or one of the run's own files), and is the input folder unchanged?"""
    run = _run(graded_runs, who)
    rows = {(r["student_id"], r["assignment"]): r for r in run["grades"]}
    for student in ("carol", "slip", "empty", "onlymac", "link", "enc", "bomb", "nonutf8"):
        assert rows[(student, ASSIGNMENT)]["total"] == "0", student
    assert "this is the instance notebook" in run["report"]
    students = set(run["graded"]) | {"carol", "slip", "empty", "onlymac", "link", "enc", "bomb", "nonutf8"}
    own = {"grades.csv", "report.md", "run.json", INTAKE_CSV}
    for path in run["written"]:
        parts = path.split("/")
        if path in own:
            continue
        where = {
            "feedback": (3, 1),
            "results": (3, 2),
            "logs": (3, 2),
            "gradescope": (4, 2),
            "submissions": (4, 1),
        }.get(parts[0])
        assert where and len(parts) == where[0] and parts[where[1]].split(".json")[0].split(".log")[0] in students, path
    assert not run["input_changed"] and not run["top_changed"]
