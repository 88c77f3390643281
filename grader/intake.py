"""Submission intake: every file a class hands in is accounted for.

One rule: every file under the submissions folder (and every member of every zip there) ends in
exactly one outcome of the intake table (``<out>/intake.csv``):

- ``graded``: graded as (student, assignment);
- ``superseded``: a notebook of the same student and assignment that is older than the graded one
  (later in the same zip, or a newer file, wins);
- ``ignored``: what systems write beside submissions (``__MACOSX/``, ``.DS_Store``, Jupyter
  checkpoints, nbgrader's ``timestamp.txt``, the manifest of ``starter.submit``, LMS receipts);
- ``rejected``: with the reason (not a notebook, no valid student id, the wrong assignment, an
  unsafe or unreadable zip member, ...). A student whose files were all rejected gets a 0 row.

Layouts accepted, mixed freely in one folder (docs/instructor-guide.md, "What `make grade` accepts"):
``<student>.ipynb``; ``<student>.zip`` with notebooks anywhere inside (one level of zip in a zip);
nbgrader's ``<student>/<assignment>/*.ipynb`` and any ``<student>/`` folder; Canvas
``<name>[_late]_<userid>_<submissionid>_<file>``; Moodle ``<Full Name>_<id>_assignsubmission_file_/``;
Blackboard ``<Assignment>_<username>_attempt_<date>_<file>``; Gradescope's export
(``submission_metadata.yml`` beside ``submission_<id>/`` folders). A notebook is identified by its
graded cells' ``grade_id``s, not by its name. Zip members are read into memory under caps and never
extracted by their own paths: a chosen notebook is written to ``<unpack_root>/<student>/<a>/<a>.ipynb``
with a student id checked by ``starter.ids``; the input folder is only read.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from functools import cache, partial
from pathlib import Path

from starter import common
from starter.ids import StudentIdError, check_student_id, normalise_student_id

MAX_MEMBER_BYTES = common.MAX_NOTEBOOK_FILE_BYTES  # one zip member read into memory at most
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024  # what one uploaded zip may unpack to, nested zips included
MAX_RATIO = 1000  # a member this many times larger than its compressed bytes is a zip bomb ...
RATIO_FLOOR_BYTES = 16 * 1024 * 1024  # ... when it unpacks to more than this (small files compress well)
MAX_MEMBERS = 10_000  # a zip with more members is not a notebook upload
INTAKE_CSV = "intake.csv"

IGNORED_FOLDERS = {
    "__MACOSX": "macOS archive metadata",
    ".ipynb_checkpoints": "Jupyter's autosave checkpoints",
    "__pycache__": "Python's bytecode cache",
    ".git": "a git repository's internals",
}
IGNORED_FILES = {
    ".DS_Store": "macOS folder metadata",
    "Thumbs.db": "Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
    "timestamp.txt": "nbgrader's record of when it was handed in",
    "submission_secret.txt": "nbgrader's record of the submission",
}
MANIFEST = "MANIFEST.json"  # written by starter.submit next to the notebooks
GRADESCOPE_METADATA = "submission_metadata.yml"

CANVAS = re.compile(r"(?P<name>[^_]+?)(?P<late>_late)?_(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)")
BLACKBOARD = re.compile(
    r"(?P<assignment>.+)_(?P<user>[^_]+)_attempt_(?P<date>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?:_(?P<file>.+))?"
)
MOODLE = re.compile(r"(?P<name>.+)_(?P<participant>\d+)_assignsubmission_(?P<plugin>[a-z]+)_?")
GRADESCOPE_FOLDER = re.compile(r"submission_\d+")


class Outcome(Enum):
    GRADED = "graded"
    SUPERSEDED = "superseded"
    IGNORED = "ignored"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Job:
    """One notebook to grade: the student, its assignment, and the file the grader reads."""

    student: str
    assignment: str
    notebook: Path


@dataclass
class IntakeRecord:
    """One row of the intake table: one file (or zip member) and what became of it."""

    file: str  # relative to the submissions folder; a zip member as "a.zip:folder/x.ipynb"
    outcome: Outcome
    reason: str = ""  # why ignored, rejected or superseded; a note for a graded file
    student: str = ""  # the student id (several joined by "+" for a group submission)
    name: str = ""  # what the id was taken from (file or folder name, LMS entry), as it was
    assignment: str = ""  # the assignment its graded cells say (or its folder, when they say none)
    layout: str = ""  # how the owner was read: file, folder, canvas, moodle, blackboard, gradescope

    FIELDS = ("file", "outcome", "reason", "student", "name", "assignment", "layout")

    def row(self) -> list[str]:
        return [
            self.file,
            self.outcome.value,
            self.reason,
            self.student,
            self.name,
            self.assignment,
            self.layout,
        ]


@dataclass(frozen=True)
class MissingSubmission:
    """A student with files but no graded notebook of an assignment: a 0 row with the reason."""

    student: str
    assignment: str
    reason: str


@dataclass
class Intake:
    records: list[IntakeRecord] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    missing: list[MissingSubmission] = field(default_factory=list)
    other_shards: set[str] = field(default_factory=set)  # students left to other shards (not opened)
    graded_from: dict[Job, str] = field(default_factory=dict)  # job -> the file (label) it grades

    def count(self, outcome: Outcome) -> int:
        return sum(1 for record in self.records if record.outcome is outcome)

    def csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(IntakeRecord.FIELDS)
        for record in sorted(self.records, key=lambda r: r.file):
            writer.writerow(record.row())
        return buffer.getvalue()

    def summary(self, limit: int = 20) -> str:
        """A few lines for the terminal: the counts, then every rejected file and every note."""
        counts = ", ".join(f"{self.count(outcome)} {outcome.value}" for outcome in Outcome)
        lines = [f"Intake: {len(self.records)} file(s): {counts} (every file in {INTAKE_CSV})"]
        shown = [r for r in self.records if r.outcome is Outcome.REJECTED]
        shown += [r for r in self.records if r.outcome is Outcome.GRADED and r.reason]
        for record in sorted(shown, key=lambda r: (r.outcome.value, r.file))[:limit]:
            lines.append(f"  {record.outcome.value}: {record.file}: {record.reason}")
        if len(shown) > limit:
            lines.append(f"  ... and {len(shown) - limit} more in {INTAKE_CSV}")
        return "\n".join(lines)


# -- owners: who handed a file in ----------------------------------------------------------------
@dataclass(frozen=True)
class Owner:
    students: tuple[str, ...]  # valid ids; empty when none could be made (see problem)
    name: str  # what they were read from, as it was
    layout: str
    problem: str = ""  # why there is no student id
    order: str = ""  # an LMS's own order (submission id, attempt date): larger is newer


def _plain_owner(name: str, layout: str) -> Owner:
    try:
        return Owner((check_student_id(name),), name, layout)
    except StudentIdError as exc:
        return Owner((), name, layout, f"{exc}: rename the file or folder to the student's id")


def _normalised_owner(raw: str, name: str, layout: str, order: str = "") -> Owner:
    student = normalise_student_id(raw)
    if student is None:
        return Owner((), name, layout, f"no student id can be made from {raw!r}")
    return Owner((student,), name, layout, order=order)


def owner_from_file_name(file_name: str) -> tuple[Owner | None, str]:
    """(owner, the file's own name) for a file handed in at the top of the folder: an LMS export
    name (Canvas, Blackboard) gives a normalised id; any other name's stem must be a valid id.
    The owner is None for a Blackboard receipt (the attempt's .txt without a file part)."""
    stem = file_name.rpartition(".")[0] or file_name  # "...ipynb" -> "..", refused below
    canvas = CANVAS.fullmatch(file_name)
    if canvas and "." in canvas["file"]:
        owner = _normalised_owner(
            f"{canvas['name']}_{canvas['user']}", file_name, "canvas", order=canvas["submission"].rjust(20, "0")
        )
        return owner, canvas["file"]
    blackboard = BLACKBOARD.fullmatch(file_name) or BLACKBOARD.fullmatch(stem)
    if blackboard:
        if not blackboard["file"]:
            return None, file_name
        return _normalised_owner(blackboard["user"], file_name, "blackboard", order=blackboard["date"]), blackboard[
            "file"
        ]
    return _plain_owner(stem, "file"), file_name


def owner_from_folder_name(folder: str, gradescope: dict[str, Owner] | None = None) -> Owner:
    if gradescope is not None and folder in gradescope:
        return gradescope[folder]
    moodle = MOODLE.fullmatch(folder)
    if moodle:
        return _normalised_owner(f"{moodle['name']}_{moodle['participant']}", folder, "moodle")
    return _plain_owner(folder, "folder")


def read_gradescope_metadata(path: Path) -> dict[str, Owner]:
    """``submission_<id>`` -> its submitters, from Gradescope's export ``submission_metadata.yml``
    (keys as Gradescope writes them: ``:submitters:`` with ``:sid:``, ``:email:``, ``:name:``).
    The id is the student id (``:sid:``), else the email, else the normalised name."""
    import yaml  # in the grading environment's lock; only an export needs it

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except (yaml.YAMLError, OSError):
        return {}
    owners = {}
    for folder, entry in (data or {}).items() if isinstance(data, dict) else []:
        submitters = entry.get(":submitters") if isinstance(entry, dict) else None
        students, names = [], []
        for person in submitters if isinstance(submitters, list) else []:
            if not isinstance(person, dict):
                continue
            raw = next((str(person[k]) for k in (":sid", ":email", ":name") if person.get(k)), "")
            names.append(str(person.get(":name") or raw))
            student = normalise_student_id(raw)
            if student:
                students.append(student)
        order = str(entry.get(":created_at", "")) if isinstance(entry, dict) else ""
        owner = Owner(tuple(dict.fromkeys(students)), ", ".join(names) or str(folder), "gradescope", order=order)
        if not students:
            owner = Owner((), owner.name, "gradescope", f"{GRADESCOPE_METADATA} names no submitter of {folder}")
        owners[str(folder).lstrip(":")] = owner
    return owners


# -- candidates: notebooks found, not yet read ----------------------------------------------------
Order = tuple[float | str, ...]  # a candidate's (file mtime, LMS order, position in each zip): larger is newer


@dataclass
class Candidate:
    label: str  # the file, as the intake table shows it
    parts: tuple[str, ...]  # its path inside the submission (folder names hint at the assignment)
    owner: Owner
    read: Callable[[], bytes]
    order: Order  # larger is newer: (file mtime, LMS order, position in its zip)
    path: Path | None = None  # the file itself when it is one on disk (graded where it is)


@dataclass
class _Scan:
    """What walking the submissions found: records of files already decided, and candidates."""

    records: list[IntakeRecord] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    keep_student: Callable[[str], bool] = lambda student: True
    skipped: set[str] = field(default_factory=set)  # students of other shards, seen but not opened

    def decide(
        self, label: str, outcome: Outcome, reason: str, owner: Owner | None = None, assignment: str = ""
    ) -> None:
        if owner is not None and owner.students and not any(self.keep_student(s) for s in owner.students):
            self.skipped.update(owner.students)
            return  # another shard's student: that shard accounts for it
        self.records.append(
            IntakeRecord(
                label,
                outcome,
                reason,
                "+".join(owner.students) if owner else "",
                owner.name if owner else "",
                assignment,
                owner.layout if owner else "",
            )
        )


def _ignored_reason(parts: Iterable[str]) -> str | None:
    parts = list(parts)
    for part in parts[:-1]:
        if part in IGNORED_FOLDERS:
            return f"inside {part}/ ({IGNORED_FOLDERS[part]})"
        if part.startswith("."):
            return f"inside the hidden folder {part}/"
    name = parts[-1]
    if name in IGNORED_FILES:
        return IGNORED_FILES[name]
    if name.startswith("._"):
        return "macOS resource fork (AppleDouble)"
    if name.startswith(".") and not name.endswith((".ipynb", ".zip")):
        return "a hidden file"
    return None


def _member_problem(info: zipfile.ZipInfo, name: str | None) -> str | None:
    """Why a zip member is never read: an unsafe path, a link, encryption, a bomb; None when it may be."""
    if name is None:
        return "its name is not UTF-8 (re-create the zip with a current tool)"
    if name.startswith("/") or "\\" in name or re.match(r"[A-Za-z]:", name) or ".." in name.split("/"):
        return "its path points outside the zip's folder (zip-slip); never extracted"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link; never followed"
    if info.flag_bits & 0x1:
        return "encrypted: hand the notebook in without a password"
    if info.file_size > MAX_MEMBER_BYTES:
        return f"unpacks to {info.file_size / 1e6:.0f} MB, more than the {MAX_MEMBER_BYTES // 1024**2} MB read"
    if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return f"compressed more than {MAX_RATIO}:1 (a zip bomb?); not unpacked"
    return None


def _member_name(info: zipfile.ZipInfo) -> str | None:
    """The member's name as UTF-8 text, or None when it is not UTF-8. zipfile decodes names without
    the UTF-8 flag as cp437; such a name that is really UTF-8 is taken, anything else is refused."""
    if info.flag_bits & 0x800 or info.filename.isascii():
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


class _Budget:
    """Bytes one uploaded zip may still unpack to (nested zips included): MAX_ARCHIVE_BYTES."""

    def __init__(self) -> None:
        self.left = MAX_ARCHIVE_BYTES

    def read(self, bundle: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        # Declared sizes can lie: read at most the cap, whatever the header says.
        cap = min(MAX_MEMBER_BYTES, self.left)
        with bundle.open(info) as handle:
            data = handle.read(cap + 1)
        if len(data) > cap:
            raise ValueError(
                f"unpacks to more than {cap // 1024**2} MB (the zip's limit is {MAX_ARCHIVE_BYTES >> 30} GB)"
            )
        self.left -= len(data)
        return data


def _scan_zip(
    scan: _Scan, source: Path | bytes, label: str, owner: Owner, order: Order, depth: int, budget: _Budget
) -> None:
    """Every member of a zip (a path or bytes) into the scan; a zip inside is opened once (depth 1)."""
    try:
        bundle = zipfile.ZipFile(source if isinstance(source, Path) else io.BytesIO(source))
        members = bundle.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        scan.decide(label, Outcome.REJECTED, f"not a readable zip file ({exc})", owner)
        return
    files = [info for info in members if not info.is_dir()]
    if not files:
        scan.decide(label, Outcome.REJECTED, "an empty zip: it holds no file", owner)
        return
    if len(files) > MAX_MEMBERS:
        scan.decide(label, Outcome.REJECTED, f"holds {len(files)} files, more than {MAX_MEMBERS}", owner)
        return
    decided, found = len(scan.records), len(scan.candidates)
    for index, info in enumerate(files):
        name = _member_name(info)
        shown = f"{label}:{name if name is not None else info.filename.encode('cp437', 'replace').hex()}"
        problem = _member_problem(info, name)
        if problem:
            scan.decide(shown, Outcome.REJECTED, problem, owner)
            continue
        assert name is not None  # _member_problem rejected a member without a readable name
        parts = tuple(p for p in name.split("/") if p)
        ignored = _ignored_reason(parts)
        if ignored is None and parts[-1] == MANIFEST:
            ignored = "the manifest starter.submit writes beside the notebooks"
        if ignored:
            scan.decide(shown, Outcome.IGNORED, ignored, owner)
        elif parts[-1].endswith(".ipynb"):
            scan.candidates.append(Candidate(shown, parts, owner, partial(budget.read, bundle, info), (*order, index)))
        elif parts[-1].endswith(".zip") and depth == 0:
            try:
                inner = budget.read(bundle, info)
            except (ValueError, zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError) as exc:
                scan.decide(shown, Outcome.REJECTED, f"cannot be unpacked: {exc}", owner)
                continue
            _scan_zip(scan, inner, shown, owner, (*order, index), depth + 1, budget)
        elif parts[-1].endswith(".zip"):
            scan.decide(shown, Outcome.REJECTED, "a zip inside a zip inside a zip: only one level is unpacked", owner)
        else:
            scan.decide(shown, Outcome.REJECTED, "not a notebook (.ipynb) or a zip: only notebooks are graded", owner)
    rejected = any(r.outcome is Outcome.REJECTED for r in scan.records[decided:])
    if len(scan.candidates) == found and not rejected:
        # Only system files inside (e.g. __MACOSX/): the zip itself says that nothing was handed in.
        scan.decide(label, Outcome.REJECTED, "holds no notebook, only files that are ignored", owner)


def _scan_file(scan: _Scan, path: Path, label: str, parts: tuple[str, ...], owner: Owner | None) -> None:
    """One file on disk. `owner` None: a file at the top of the folder, owned by its own name."""
    ignored = _ignored_reason(parts)
    if ignored:
        scan.decide(label, Outcome.IGNORED, ignored, owner)
        return
    if path.is_symlink() or not path.is_file():
        scan.decide(label, Outcome.REJECTED, "a symbolic link or special file; never followed", owner)
        return
    inner_name = parts[-1]
    if owner is None:
        owner, inner_name = owner_from_file_name(parts[-1])
        if owner is None:
            scan.decide(label, Outcome.IGNORED, "Blackboard's receipt of a submission attempt")
            return
        if owner.layout == "file" and not inner_name.endswith((".ipynb", ".zip")):
            owner = None  # notes.txt beside the submissions is nobody's: no student "notes" with a 0
    if not inner_name.endswith((".ipynb", ".zip")):
        scan.decide(label, Outcome.REJECTED, "not a notebook (.ipynb) or a zip: only notebooks are graded", owner)
        return
    assert owner is not None  # set above, or None only for a file that is not a notebook or zip (returned)
    if not owner.students:
        scan.decide(label, Outcome.REJECTED, owner.problem, owner)
        return
    if not any(scan.keep_student(s) for s in owner.students):
        scan.skipped.update(owner.students)
        return  # another shard's student: not even opened
    order = (path.lstat().st_mtime, owner.order)
    if inner_name.endswith(".ipynb"):
        hint_parts = (*parts[:-1], inner_name)
        scan.candidates.append(Candidate(label, hint_parts, owner, path.read_bytes, (*order, 0), path))
    else:
        _scan_zip(scan, path, label, owner, order, 0, _Budget())


def _walk_files(root: Path) -> list[Path]:
    """Every entry under `root`, sorted, never descending through a symbolic link."""
    found = []
    for directory, subdirs, files in os.walk(root, followlinks=False):
        links = [d for d in subdirs if (Path(directory) / d).is_symlink()]
        subdirs[:] = sorted(d for d in subdirs if d not in links)
        found += [Path(directory) / name for name in sorted(files + links)]
    return found


def _scan_folder(scan: _Scan, root: Path, label_root: Path, owner: Owner | None) -> None:
    """A submissions folder (owner None: each top-level entry is one student's) or one student's folder."""
    gradescope = None
    if owner is None and (root / GRADESCOPE_METADATA).is_file():
        gradescope = read_gradescope_metadata(root / GRADESCOPE_METADATA)
    for path in _walk_files(root):
        relative = path.relative_to(root)
        label = path.relative_to(label_root).as_posix()
        if owner is not None:
            _scan_file(scan, path, label, relative.parts, owner)
        elif len(relative.parts) == 1:
            if gradescope is not None and relative.name == GRADESCOPE_METADATA:
                scan.decide(label, Outcome.IGNORED, "Gradescope's export metadata (read for the student ids)")
            else:
                _scan_file(scan, path, label, relative.parts, None)
        else:
            folder_owner = owner_from_folder_name(relative.parts[0], gradescope)
            ignored = _ignored_reason(relative.parts)
            if ignored:
                scan.decide(label, Outcome.IGNORED, ignored, folder_owner if folder_owner.students else None)
            else:
                _scan_file(scan, path, label, relative.parts[1:], folder_owner)


# -- identification: which assignment a notebook is -----------------------------------------------
@cache
def _graded_ids(name: str) -> tuple[str, ...]:
    from grader.assignments import load_assignment

    return tuple(unit.grade_id for unit in load_assignment(name).units)


def _hint(parts: tuple[str, ...], known: list[str]) -> str | None:
    """The assignment a notebook's own name or folder names, used only when its cells name none."""
    stem = parts[-1].rsplit(".", 1)[0]
    if stem in known:
        return stem
    return next((part for part in reversed(parts[:-1]) if part in known), None)


@dataclass
class _Identified:
    candidate: Candidate
    assignment: str
    data: bytes
    note: str = ""
    readable: bool = True

    @property
    def rank(self) -> tuple[bool, Order]:
        """Which of a student's notebooks of one assignment is graded: a readable one, the newest."""
        return (self.readable, self.candidate.order)


def _identify(candidate: Candidate, known: list[str], wanted: list[str]) -> tuple[_Identified | None, str, str]:
    """(identified notebook or None, rejection reason, assignment named) for one candidate."""
    try:
        data = candidate.read()
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as exc:
        return None, f"cannot be read: {exc}", ""
    hint = _hint(candidate.parts, known)
    note = ""
    try:
        read = common.parse_notebook(data)
    except common.NotebookError as exc:
        assignment = hint or (wanted[0] if len(wanted) == 1 else None)
        if assignment is None or assignment not in wanted:
            return None, f"not a readable notebook: {exc}", hint or ""
        # Graded all the same (unless a readable one is found): the grader's 0 carries the message.
        return _Identified(candidate, assignment, data, f"unreadable, scores 0: {exc}", False), "", assignment
    if read.dropped_output_bytes:
        note = f"{read.dropped_output_bytes / 1e6:.0f} MB of outputs dropped (grading never reads outputs)"
    assignment = common.infer_assignment(read.notebook, {name: _graded_ids(name) for name in known}) or hint
    if assignment is None:
        return (
            None,
            "none of its cells is a graded cell of any assignment (their grade_id metadata is missing: "
            "start again from the released notebook)",
            "",
        )
    if assignment not in wanted:
        asked = f"ASSIGNMENT={wanted[0]} was asked for" if len(wanted) == 1 else f"this run grades {', '.join(wanted)}"
        return None, f"this is the {assignment} notebook (by its graded cells); {asked}", assignment
    return _Identified(candidate, assignment, data, note), "", assignment


# -- the intake step ------------------------------------------------------------------------------
def scan(paths: list[Path], keep_student: Callable[[str], bool] | None = None, owner: Owner | None = None) -> _Scan:
    """Walk the submissions (folders, zips, notebooks) without reading any notebook yet."""
    found = _Scan(keep_student=keep_student or (lambda student: True))
    for path in paths:
        if path.is_dir():
            # Several folders: each file is named with its folder's, so that no two rows share a name.
            _scan_folder(found, path, path.parent if len(paths) > 1 else path, owner)
        elif path.is_file() and path.suffix in (".ipynb", ".zip"):
            _scan_file(found, path, path.name, (path.name,), owner)
        else:
            raise SystemExit(f"error: {path} is neither a folder, a .zip nor a .ipynb file")
    return found


def take_in(
    paths: list[Path],
    known: list[str],
    assignment: str | list[str] | None = None,
    unpack_root: Path | None = None,
    keep_student: Callable[[str], bool] | None = None,
    owner: Owner | None = None,
) -> Intake:
    """The intake step: every file under `paths` into the table, and the notebooks to grade.

    `assignment`: the one (or ones) to grade; others are rejected, named. None: every known one.
    A notebook from a zip is written to `unpack_root/<student>/<a>/<a>.ipynb`; a notebook file is
    graded where it is. `owner`: the one owner of everything (a Gradescope upload)."""
    wanted = [assignment] if isinstance(assignment, str) else list(assignment or known)
    found = scan(paths, keep_student, owner)
    intake = Intake(records=list(found.records), other_shards=found.skipped)
    chosen: dict[tuple[str, str], _Identified] = {}
    identified: list[_Identified] = []
    rejected: list[tuple[Candidate, str, str]] = []
    for candidate in found.candidates:
        result, reason, named = _identify(candidate, known, wanted)
        if result is None:
            rejected.append((candidate, reason, named))
            continue
        identified.append(result)
        for student in candidate.owner.students:
            key = (student, result.assignment)
            if key not in chosen or chosen[key].rank < result.rank:
                chosen[key] = result
    for item in identified:
        owner_ = item.candidate.owner
        wins = [s for s in owner_.students if chosen[(s, item.assignment)] is item]
        if not wins:
            newer = chosen[(owner_.students[0], item.assignment)].candidate.label
            why = "a newer" if item.readable else "a readable"
            record = IntakeRecord(item.candidate.label, Outcome.SUPERSEDED, f"{why} notebook was graded: {newer}")
        else:
            record = IntakeRecord(item.candidate.label, Outcome.GRADED, item.note)
        record.student, record.name = "+".join(owner_.students), owner_.name
        record.assignment, record.layout = item.assignment, owner_.layout
        intake.records.append(record)
        for student in wins:
            job = Job(student, item.assignment, _place(item, student, unpack_root))
            intake.jobs.append(job)
            intake.graded_from[job] = item.candidate.label
    for candidate, reason, named in rejected:
        owner_ = candidate.owner
        intake.records.append(
            IntakeRecord(
                candidate.label, Outcome.REJECTED, reason, "+".join(owner_.students), owner_.name, named, owner_.layout
            )
        )
    intake.missing = _missing(intake, wanted)
    intake.jobs.sort(key=lambda job: (job.student, job.assignment))
    return intake


def _place(item: _Identified, student: str, unpack_root: Path | None) -> Path:
    """The file the grader reads: the notebook itself, or its bytes written for this student."""
    if item.candidate.path is not None:
        return item.candidate.path
    if unpack_root is None:
        raise ValueError("a notebook from a zip needs a folder to be unpacked to")
    check_student_id(student)  # the folder name: never anything but a plain id
    unpack_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = unpack_root / student / item.assignment / f"{item.assignment}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    common.write_atomic(target, item.data)
    return target


def _missing(intake: Intake, wanted: list[str]) -> list[MissingSubmission]:
    """Students with a rejected file and no graded notebook of its assignment: one 0 row each, the
    reasons joined. A file of no known assignment counts against every assignment graded."""
    graded = {(job.student, job.assignment) for job in intake.jobs}
    run_assignments = sorted({job.assignment for job in intake.jobs}) or (wanted if len(wanted) == 1 else [])
    reasons: dict[tuple[str, str], list[str]] = {}
    for record in intake.records:
        if record.outcome is not Outcome.REJECTED or not record.student:
            continue
        if len(wanted) == 1:
            targets = wanted
        else:
            targets = [record.assignment] if record.assignment in wanted else run_assignments
        for student in record.student.split("+"):
            for assignment in targets:
                if (student, assignment) not in graded:
                    reasons.setdefault((student, assignment), []).append(f"{record.reason} ({record.file})")
    return [
        MissingSubmission(student, assignment, "; ".join(found))
        for (student, assignment), found in sorted(reasons.items())
    ]


def write_table(intake: Intake, out_dir: Path) -> Path:
    return common.write_atomic(out_dir / INTAKE_CSV, intake.csv_text())
