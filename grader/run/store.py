"""What a run keeps on disk: the fingerprint over the inputs of a grade, the result cache, the manifest.

A result in <out>/results/<assignment>/<student>.json is reused while its fingerprint matches: the
student's notebook bytes, the units checked (--units-map), and the *grader version* of the
assignment, a hash over exactly the files and settings that can move a grade (`grade_inputs`).
Editing anything else (the gradebook and Gradescope integrations, collect, report wording, the proof
tools' `examples.py` / `alternatives.py` / `similarity_corpus/`, the `[results]`, `[proof]` and
`[visibility]` tables) keeps every cached grade.

<out>/run.json (`RunManifest`) records what a run graded, reused and failed and the protections it
had; a grading run and `segkit collect` write it through `RunManifest.write`, and collect reads it
back typed (`RunManifest.read`).
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import tomllib

from grader.assignments import CONFIG_NAME, REPO_ROOT, AssignmentSpec, load_assignment
from grader.intake import Job
from grader.results import ResultFormatError, SubmissionResult
from grader.sandbox import Protection
from starter.common import write_atomic

RUN_MANIFEST = "run.json"  # what a run graded, reused and failed, and the protections it had

# The engine modules that compute a grade (relative to the kit). The run library (grader/run/, but
# for the worker configuration), the intake, the report and the integrations are not among them.
GRADE_ENGINE = (
    "grader/__init__.py",
    "grader/assignments.py",
    "grader/harness.py",
    "grader/probes.py",
    "grader/results.py",
    "grader/runner.py",
    "grader/worker.py",
    "grader/run/__init__.py",
    "grader/run/config.py",
)
GRADE_ENGINE_PACKAGES = ("grader/sandbox",)  # every file: the sandbox's limits and mechanisms
STARTER = "starter"  # every module: a student's notebook may import any of them in the worker
# The public checks several assignments share (starter.checks.shared in the student bundle).
SHARED_PUBLIC_CHECKS = "assignments/_shared/public_checks.py"
LOCK_FILE = "requirements-lock.txt"  # the versions of torch & co. the worker and the checks run
GRADING_TABLE = "grading"  # the one table of assignment.toml that can move a grade


@cache
def spec_of(name: str, root: Path = REPO_ROOT) -> AssignmentSpec:
    """The assignment `name` of the kit at `root` (read once per process)."""
    return load_assignment(name, root)


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _package_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def _module_file(name: str, root: Path) -> Path | None:
    """The kit's file of module `name` (a.b -> a/b.py or a/b/__init__.py), None when not the kit's."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # from pkg import module
    return names


def check_files(spec: AssignmentSpec, root: Path = REPO_ROOT) -> list[Path]:
    """The hidden checks of `spec` and the kit's modules they import (shared check modules such as
    assignments/_shared/metric_checks.py), following imports through modules under assignments/."""
    found: list[Path] = []
    todo = [spec.checks_path]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.append(path)
        for name in sorted(_imported_names(path)):
            module = _module_file(name, root)
            if module is None or module in found:
                continue
            if module.is_relative_to(root / "assignments"):
                todo.append(module)
            else:
                found.append(module)
    return sorted(found)


def grade_inputs(assignment: str, root: Path = REPO_ROOT) -> list[Path]:
    """Every file a grade of `assignment` depends on, besides the student's notebook: the engine
    modules that compute grades, the starter modules a worker may import, the hidden checks and
    the modules they import, the assignment's public checks (its notebook calls them in the worker),
    the solution notebook (the reference) and the released notebook (its setup cells run in the
    worker), and the lock file. assignment.toml counts through `grading_table` only."""
    spec = spec_of(assignment, root)
    engine = [root / name for name in GRADE_ENGINE]
    for package in GRADE_ENGINE_PACKAGES:
        engine += _package_files(root / package)
    public = spec.folder / "public_checks.py"
    files = [
        *engine,
        *_python_files(root / STARTER),
        *check_files(spec, root),
        *([public] if public.is_file() else []),
        root / SHARED_PUBLIC_CHECKS,
        spec.solution_path,
        spec.release_path,
        root / LOCK_FILE,
    ]
    return sorted({path for path in files if path.is_file()})


def grading_table(assignment: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The `[grading]` table of the assignment's assignment.toml (empty when it has none)."""
    with open(spec_of(assignment, root).folder / CONFIG_NAME, "rb") as file:
        table: dict[str, Any] = tomllib.load(file).get(GRADING_TABLE, {})
        return table


def grader_fingerprint(assignment: str, root: Path = REPO_ROOT) -> str:
    """The grader version of `assignment`: a hash of `grade_inputs` and `grading_table`."""
    digest = hashlib.sha256()
    for path in grade_inputs(assignment, root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    table = json.dumps(grading_table(assignment, root), sort_keys=True)
    digest.update(f"{CONFIG_NAME}[{GRADING_TABLE}]\0{table}".encode())
    return digest.hexdigest()[:16]


def job_fingerprint(job: Job, grader_version: str) -> str:
    return hashlib.sha256(job.notebook.read_bytes() + grader_version.encode()).hexdigest()[:24]


def expected_fingerprint(job: Job, versions: dict[str, str], units_map: dict[str, list[str]]) -> str:
    """The fingerprint an up-to-date result of `job` carries. A result checked on a subset of
    units (--units-map) never stands in for a full one: the unit list is part of it."""
    return job_fingerprint(job, versions[job.assignment] + json.dumps(units_map.get(job.student)))


def expected_fingerprints(jobs: list[Job], units_map: dict[str, list[str]]) -> dict[Job, str]:
    """`expected_fingerprint` of every job (each assignment's grader version hashed once)."""
    versions = {name: grader_fingerprint(name) for name in {job.assignment for job in jobs}}
    return {job: expected_fingerprint(job, versions, units_map) for job in jobs}


def result_path(out_dir: Path, student: str, assignment: str) -> Path:
    return out_dir / "results" / assignment / f"{student}.json"


def read_cached_result(path: Path) -> SubmissionResult | None:
    """The result a previous run wrote at `path`, or None when there is none or it is not a result
    (then the submission is graded again, as for a stale fingerprint)."""
    if not path.exists():
        return None
    try:
        result = SubmissionResult.from_json(path.read_text())
    except ResultFormatError:
        return None
    # The file's keys are sorted; feedback lists units in the notebook's order, so restore it.
    try:
        order = [unit.grade_id for unit in spec_of(result.assignment).auto_units]
    except FileNotFoundError:
        return result
    rank = {grade_id: index for index, grade_id in enumerate(order)}
    result.units = dict(sorted(result.units.items(), key=lambda item: rank.get(item[0], len(rank))))
    return result


def write_result(out_dir: Path, result: SubmissionResult) -> Path:
    return write_atomic(result_path(out_dir, result.student_id, result.assignment), result.to_json())


class ManifestError(ValueError):
    """A run.json that is not a run manifest."""


@dataclass
class RunManifest:
    """<out>/run.json: what one run (or one `segkit collect`) graded, reused and failed, with the
    protections it had. `submissions` and `rejected_without_grade` hold (student, assignment) pairs."""

    students: list[str] = field(default_factory=list)
    submissions: list[tuple[str, str]] = field(default_factory=list)
    graded: int = 0
    reused: int = 0
    failures: list[str] = field(default_factory=list)
    protections: list[Protection] = field(default_factory=list)
    unsafe_no_sandbox: bool = False
    host: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    shard: str | None = None  # "K/N" of a --shard run
    processes: int | None = None  # parallel grading processes, -j (None: collect, which grades nothing)
    intake: dict[str, int] = field(default_factory=dict)  # files per intake outcome
    rejected_without_grade: list[tuple[str, str]] = field(default_factory=list)
    collected_from: list[str] = field(default_factory=list)  # the folders `segkit collect` merged

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["submissions"] = [list(pair) for pair in self.submissions]
        record["rejected_without_grade"] = [list(pair) for pair in self.rejected_without_grade]
        return record

    def write(self, out_dir: Path) -> Path:
        """The one writer of run.json."""
        return write_atomic(out_dir / RUN_MANIFEST, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RunManifest:
        """A manifest from run.json's object; keys a version of the kit did not write take their
        defaults, unknown keys are ignored. Raises ManifestError on a value of the wrong shape."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        try:
            manifest = cls(**values)
            manifest.submissions = [(str(s), str(a)) for s, a in manifest.submissions]
            manifest.rejected_without_grade = [(str(s), str(a)) for s, a in manifest.rejected_without_grade]
            manifest.protections = [Protection(**p) for p in values.get("protections", [])]
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"not a run manifest: {exc}") from None
        return manifest

    @classmethod
    def read(cls, folder: Path) -> RunManifest | None:
        """The manifest of `folder`, or None when it has none (or an unreadable one)."""
        try:
            record = json.loads((folder / RUN_MANIFEST).read_text())
            return cls.from_dict(record) if isinstance(record, dict) else None
        except (OSError, ValueError):
            return None
