"""Grading on many machines: `--shard K/N` and `segkit collect` (grader/run/, integrations/collect.py).

The fast tests (make test) grade nothing: each folder is seeded with results carrying the
fingerprint the grader expects (as a previous run would have left them), so every run reuses them
and only the sharding, merging and rendering are exercised, in-process, in a few seconds. The proof
test grades real notebooks, sharded and on one machine, and compares the bytes; tests/test_slurm.py
does the same through a real Slurm job array.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader import cli
from grader.assignments import REPO_ROOT, load_assignment
from grader.results import CheckResult, SubmissionResult, UnitResult
from grader.run.discovery import Shard, discover, shard_of
from grader.run.store import expected_fingerprint, grader_fingerprint
from grader.sandbox import active_protections
from integrations import collect

ASSIGNMENT = "cam"
STUDENTS = [f"s{index:02d}" for index in range(12)]
SHARDS = 3
RENDERED = ("grades.csv", "report.md", "feedback", "gradescope")


def folder_bytes(folder: Path, names=RENDERED) -> dict[str, bytes]:
    """Every file under the rendered outputs of `folder`, by relative path."""
    files = {}
    for name in names:
        root = folder / name
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files.update({str(p.relative_to(folder)): p.read_bytes() for p in paths})
    return files


def synthetic_result(student: str, index: int, fingerprint: str) -> SubmissionResult:
    """A plausible result: unit k earns full marks when bit k of the student's index is set."""
    units = {}
    for k, unit in enumerate(load_assignment(ASSIGNMENT).auto_units):
        passed = bool(index >> k & 1)
        check = CheckResult(
            test=f"test_{unit.grade_id}",
            question=f"Does {unit.grade_id} work?",
            grade_id=unit.grade_id,
            points=unit.points if passed else 0.0,
            max_points=unit.points,
            passed=passed,
            message="" if passed else f"{unit.grade_id} is wrong.",
            seconds=0.5,
        )
        units[unit.grade_id] = UnitResult(unit.grade_id, check.points, unit.points, [check])
    return SubmissionResult(
        student_id=student,
        assignment=ASSIGNMENT,
        total=round(sum(u.points for u in units.values()), 4),
        max_points=round(sum(u.max_points for u in units.values()), 4),
        units=units,
        cell_status={gid: "ok" for gid in units},
        protections=[p.name for p in active_protections()],
        duration_s=10.0 + index,
        fingerprint=fingerprint,
    )


def seed(folder: Path, results: dict[str, SubmissionResult], students):
    for student in students:
        path = folder / "results" / ASSIGNMENT / f"{student}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(results[student].to_json())


def run_grader(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_collect(argv, capsys) -> tuple[int, str, str]:
    code = collect.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def classroom(tmp_path, capsys):
    """12 submissions of one assignment, their results, one single-machine run and 3 shard runs."""
    release = json.loads(load_assignment(ASSIGNMENT).release_path.read_text())
    submitted = tmp_path / "submitted"
    for student in STUDENTS:
        notebook = dict(release, metadata={**release["metadata"], "student": student})  # distinct bytes
        path = submitted / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(notebook))
    jobs = discover([submitted], None)
    versions = {ASSIGNMENT: grader_fingerprint(ASSIGNMENT)}
    results = {
        job.student: synthetic_result(job.student, STUDENTS.index(job.student), expected_fingerprint(job, versions, {}))
        for job in jobs
    }
    single = tmp_path / "single"
    seed(single, results, STUDENTS)
    code, out, _ = run_grader([submitted, "--out", single, "-j", "1"], capsys)
    assert code == 0 and f"Reusing {len(STUDENTS)} up-to-date result(s); grading 0." in out
    shards, taken = [], {}
    for index in range(1, SHARDS + 1):
        folder = tmp_path / "shards" / str(index)
        seed(folder, results, [s for s in STUDENTS if shard_of(s, SHARDS) == index])
        code, out, _ = run_grader([submitted, "--out", folder, "--shard", f"{index}/{SHARDS}", "-j", "1"], capsys)
        assert code == 0, out
        taken[index] = json.loads((folder / "run.json").read_text())["students"]
        assert f"Shard {index}/{SHARDS}: {len(taken[index])} of {len(STUDENTS)} students" in out
        assert ", ".join(taken[index]) in out  # it says which students it took
        shards.append(folder)
    return {"submitted": submitted, "single": single, "shards": shards, "taken": taken, "results": results}


def test_shard_of_is_a_stable_partition():
    # sha256 of the id: the same slice on every machine and in every Python process (not hash()).
    assert [shard_of(s, 4) for s in ("alice", "bob", "carol", "dave")] == [1, 2, 2, 3]
    for count in range(1, 8):
        slices = [shard_of(s, count) for s in STUDENTS]
        assert all(1 <= k <= count for k in slices)
    assert Shard.parse("2/4") == Shard(2, 4)
    for bad in ("0/4", "5/4", "2", "a/b", "2/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_shard_option_errors_are_readable(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), "--shard", "5/4"])
    assert "K must be between 1 and N" in capsys.readouterr().err


def test_shards_partition_the_students_and_collect_equals_one_machine(classroom, tmp_path, capsys):
    taken = classroom["taken"]
    assert sorted(s for students in taken.values() for s in students) == STUDENTS  # each student once
    merged = tmp_path / "merged"
    code, out, err = run_collect([merged, *classroom["shards"], "--submissions", classroom["submitted"]], capsys)
    assert code == 0, err
    assert f"Merged {len(STUDENTS)} result(s)" in out
    assert folder_bytes(merged) == folder_bytes(classroom["single"])  # byte for byte
    assert len(folder_bytes(merged)) == 2 + 3 * len(STUDENTS)  # grades.csv, report.md; .md, .html, results.json
    assert folder_bytes(merged, ["results"]) == folder_bytes(classroom["single"], ["results"])
    manifest = json.loads((merged / "run.json").read_text())
    assert manifest["students"] == STUDENTS and manifest["failures"] == []
    # A plain re-run over the merged folder reuses every result and changes nothing.
    before = folder_bytes(merged)
    code, out, _ = run_grader([classroom["submitted"], "--out", merged, "-j", "1"], capsys)
    assert code == 0 and f"Reusing {len(STUDENTS)} up-to-date result(s); grading 0." in out
    assert folder_bytes(merged) == before
    # Without --submissions, the shards' run.json say what to expect.
    code, _, err = run_collect([tmp_path / "merged-2", *classroom["shards"]], capsys)
    assert code == 0, err
    assert folder_bytes(tmp_path / "merged-2") == before


def test_collect_reports_conflicts_missing_and_stale(classroom, tmp_path, capsys):
    first, second, third = classroom["shards"]
    victim = classroom["taken"][1][0]
    # A second copy of shard 1 whose result for `victim` gives other points: a conflict, left out.
    twin = tmp_path / "twin"
    shutil.copytree(first, twin)
    path = twin / "results" / ASSIGNMENT / f"{victim}.json"
    changed = json.loads(path.read_text())
    changed["total"] += 1
    path.write_text(json.dumps(changed))
    code, _, err = run_collect([tmp_path / "m1", first, twin, second, third], capsys)
    assert code == 1
    assert "Conflicts (left out) (1)" in err and f"{victim}/{ASSIGNMENT}: different results" in err
    assert victim not in (tmp_path / "m1" / "grades.csv").read_text()

    # Another fingerprint (an older notebook or grader): with --submissions the current one wins.
    changed["fingerprint"] = "0" * 24
    path.write_text(json.dumps(changed))
    code, out, err = run_collect(
        [tmp_path / "m2", first, twin, second, third, "--submissions", classroom["submitted"]], capsys
    )
    assert code == 0, err
    assert f"{victim}/{ASSIGNMENT}: kept {first}" in out
    assert folder_bytes(tmp_path / "m2") == folder_bytes(classroom["single"])
    # Only the old one: stale, left out, and a plain re-run would grade it.
    code, _, err = run_collect([tmp_path / "m3", twin, second, third, "--submissions", classroom["submitted"]], capsys)
    assert code == 1 and "Stale results (left out) (1)" in err and victim in err

    # A shard that lost a result (a grading failure) and a shard that never ran.
    lost = classroom["taken"][2][0]
    (second / "results" / ASSIGNMENT / f"{lost}.json").unlink()
    code, _, err = run_collect([tmp_path / "m4", first, second, "--submissions", classroom["submitted"]], capsys)
    assert code == 1
    assert f"{lost}/{ASSIGNMENT}: no result in any folder" in err
    assert f"shard 3/{SHARDS}: no folder with its run.json" in err
    for student in classroom["taken"][3]:
        assert f"{student}/{ASSIGNMENT}: no result" in err
    assert "Grade what is missing with: python -m grader" in err
    # Without --submissions the run.json of the shards that ran name what they took.
    code, _, err = run_collect([tmp_path / "m5", first, second], capsys)
    assert code == 1 and f"{lost}/{ASSIGNMENT}: no result in any folder" in err


@pytest.mark.proof
@pytest.mark.slow
def test_sharded_grading_matches_one_machine(tmp_path):
    """Real grading: 2 shards and one machine grade the same CAM example notebooks; the merged
    gradebook, report and feedback are byte-identical, and a re-run reuses everything."""
    from segkit.proof.examples import example_notebooks

    submitted = tmp_path / "submitted"
    students = ["example-solution", "example-untouched", "example-buggy"]
    for student, notebook in example_notebooks(ASSIGNMENT).items():
        if student in students:
            path = submitted / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(notebook))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    options = ["--cell-timeout", "60", "--probe-timeout-cap", "60", "--memory-mb", "3072"]

    def grade(*argv):
        command = [sys.executable, "-m", "grader", str(submitted), *map(str, argv), *options]
        run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout

    grade("--out", tmp_path / "single", "-j", "2")
    for index in (1, 2):
        grade("--out", tmp_path / "shards" / str(index), "--shard", f"{index}/2", "-j", "1")
    merged = tmp_path / "merged"
    command = [
        sys.executable,
        "-m",
        "integrations.collect",
        str(merged),
        *(str(p) for p in (tmp_path / "shards").iterdir()),
    ]
    run = subprocess.run(
        [*command, "--submissions", str(submitted)], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert folder_bytes(merged) == folder_bytes(tmp_path / "single")
    assert f"Reusing {len(students)} up-to-date result(s); grading 0." in grade("--out", merged, "-j", "1")


def test_atomic_writes_need_no_lock(tmp_path):
    """Results are written under a temporary name unique across machines (host, pid, random part) in
    the destination folder, then renamed: concurrent writers, even on NFS, never collide."""
    import socket

    from starter import common

    seen = []
    common.write_atomically(tmp_path / "a.json", lambda temporary: seen.append(temporary) or temporary.write_text("x"))
    assert seen[0].parent == tmp_path
    assert f".a.json.{socket.gethostname()}.{os.getpid()}." in seen[0].name
    target = tmp_path / "shared.json"
    # Four processes (light ones: starter.common does not import torch) rewrite one file at once.
    script = "import sys; from pathlib import Path; from starter.common import write_atomic\n"
    script += "for _ in range(30): write_atomic(Path(sys.argv[1]), sys.argv[2] * 4096)"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    writers = [subprocess.Popen([sys.executable, "-c", script, str(target), marker], env=env) for marker in "abcd"]
    assert [writer.wait(60) for writer in writers] == [0, 0, 0, 0]
    assert len(set(target.read_text())) == 1 and len(target.read_text()) == 4096  # one whole version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "shared.json"]  # no temporary left


def test_slurm_scripts(tmp_path):
    from segkit import slurm

    argv = [str(tmp_path / "submitted"), "--shards", "3", "--out", str(tmp_path / "grades"), "--cpus-per-task", "2"]
    (tmp_path / "submitted").mkdir()
    folder = slurm.write_scripts(slurm.build_parser().parse_args([*argv, "--grader-args", "--memory-mb 3000"]))
    grade, collect_job, submit = (
        (folder / name).read_text() for name in ("grade.sbatch", "collect.sbatch", "submit.sh")
    )
    assert "#SBATCH --array=1-3" in grade and "#SBATCH --cpus-per-task=2" in grade
    assert '--shard "${SLURM_ARRAY_TASK_ID}/3"' in grade and "--memory-mb 3000" in grade
    assert "segkit-reference-cache" in grade  # node-local: no lock on the shared filesystem
    assert f"{tmp_path / 'grades'}/shards/{{1..3}}" in collect_job and "-m integrations.collect" in collect_job
    assert '--dependency=afterany:"$array"' in submit
    for name in ("grade.sbatch", "collect.sbatch", "submit.sh"):
        assert subprocess.run(["bash", "-n", str(folder / name)]).returncode == 0
    with pytest.raises(SystemExit):
        slurm.write_scripts(slurm.build_parser().parse_args([*argv, "--grader-args", "--shard 1/2"]))


def test_run_manifest_is_written_once_and_read_back_typed(tmp_path):
    """Does run.json round-trip through RunManifest (pairs as tuples, protections as Protection), does a
    manifest of an older version (keys missing, unknown keys) read with defaults, and is a malformed one
    refused rather than half read?"""
    from grader.run.store import RUN_MANIFEST, RunManifest
    from grader.sandbox import Protection

    manifest = RunManifest(
        students=["a"],
        submissions=[("a", ASSIGNMENT)],
        graded=1,
        protections=[Protection("process", "a separate process")],
        shard="1/2",
        processes=2,
    )
    manifest.write(tmp_path)
    assert RunManifest.read(tmp_path) == manifest
    (tmp_path / RUN_MANIFEST).write_text(json.dumps({"shard": "2/3", "jobs": 4, "submissions": [["b", "cam"]]}))
    older = RunManifest.read(tmp_path)
    assert older is not None and older.shard == "2/3" and older.submissions == [("b", "cam")] and older.graded == 0
    (tmp_path / RUN_MANIFEST).write_text(json.dumps({"submissions": [["only-one-element"]]}))
    assert RunManifest.read(tmp_path) is None
    (tmp_path / RUN_MANIFEST).write_text("[]")
    assert RunManifest.read(tmp_path) is None
