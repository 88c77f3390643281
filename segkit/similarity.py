"""`segkit similarity` (`make similarity`): which submissions share code, ranked, with the matches shown.

    segkit similarity                                  # the bundled example submissions
    segkit similarity submitted/                       # nbgrader layout: <student>/<assignment>/<nb>.ipynb
    segkit similarity hw1/ --assignment fcn            # a folder of <student_id>.ipynb or <student_id>.zip
    segkit similarity ... --threshold 0.5 --out grades/similarity

Submissions are found exactly as `segkit grade` finds them (`grader.cli.discover`). For every
assignment, each graded cell (the assignment's `grade_id`s) of every submission is compared with
the same cell of every other submission and of every corpus entry, and the graded cells of a
submission together ("whole submission") with the others' and the corpus's. The corpus is the
kit's own solution (its graded cells, read from solutions/ at run time: it is never copied into a
file) and every .py file in ``assignments/<a>/similarity_corpus/`` (public implementations the
instructor collects; each is compared with every cell and with the whole submission).

What students were given never counts as similar: the released notebook's code cells (the stubs
with their signatures and docstrings, and every given cell), the ``starter`` package and the public
checks are copydetect *boilerplate*: their fingerprints are removed from every submission's before
comparing, and from the denominators.

Output, per assignment, in ``<out>/<assignment>/`` (default ``grades/similarity/<assignment>/``):
``report.html`` (flagged pairs ranked, each side by side with the matching code highlighted; the
corpus side is labelled as such) and ``pairs.csv`` (every pair that shares any code, ranked, with
a ``flagged`` column, so a threshold can be chosen from the whole distribution).

How similarity is measured (copydetect, the winnowing algorithm of MOSS): code is tokenized with
pygments and normalised (every identifier becomes ``V``, function names ``F``, class names ``O``,
strings ``S``; comments and whitespace are dropped), so renaming variables or rewriting comments
changes nothing. Fingerprints are hashes of every run of ``NOISE_CHARS`` normalised characters.
For a pair (A, B), ``similarity_a`` is the share of A's own code (boilerplate excluded) covered by
fingerprints that also occur in B, and ``similarity_b`` the same for B. A pair is flagged when the
larger share reaches ``--threshold`` and at least ``--min-overlap`` normalised characters match.

Why copydetect (compared on this kit's own code, 28 units of 4 assignments: every unit's two
independent alternatives, ``assignments/<a>/alternatives.py``, against each other and against the
solution, and copies of the solution and of an alternative with every bound name renamed, every
comment rewritten and the spacing changed):

- copydetect 0.5.0 (winnowing over pygments tokens, maintained, 2024), as used here: the alternatives
  score at most 0.36 against each other and at most 0.55 against the solution, except a two-line
  ``cam_overlay`` alternative that is nearly the solution's code (0.74); every disguised copy scores
  0.99 or more (whole submissions: independent at most 0.37, copies 1.00). It removes boilerplate by
  fingerprint, returns the matching character ranges (the report's highlights), tokenizes code that
  does not parse (students' cells with syntax errors or IPython magics), and runs in memory.
- pycode_similar 1.4 (AST diff per function, last release 2020): copies 0.99, but independent
  alternatives up to 0.81, because nothing removes what the stubs give (signatures, docstrings; two
  untouched notebooks are identical to it); it raises on code that does not parse, compares functions
  only and locates no matching lines.
- difflib on raw text: the disguise alone drops a copy to 0.21 while independent code reaches 0.59.
- MOSS or JPlag: a web service that receives the students' code / a Java tool; not offline.
"""

from __future__ import annotations

import argparse
import csv
import functools
import html
import io
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from grader.assignments import (
    REPO_ROOT,
    AssignmentSpec,
    NotebookError,
    assignment_names,
    cell_source,
    cells_by_grade_id,
    load_assignment,
    read_notebook,
)

DEFAULT_THRESHOLD = 0.6  # this kit's independent alternatives: <= 0.55 (one 0.74); disguised copies >= 0.99
NOISE_CHARS = 25  # copydetect's noise threshold k: the shortest normalised run that counts as a match
MIN_OVERLAP = 40  # a pair sharing fewer normalised characters (about two lines) is never flagged
WHOLE = "whole submission"  # the unit name of the comparison of all graded cells together
CORPUS_PREFIX = "corpus:"
SOLUTION_NAME = CORPUS_PREFIX + "solution"
CORPUS_DIR_NAME = "similarity_corpus"
DEFAULT_OUT = REPO_ROOT / "grades" / "similarity"
STUDENT, CORPUS = "student", "corpus"
MAX_DETAILED = 300  # flagged pairs whose code report.html shows side by side (the table lists them all)


def _copydetect():
    """copydetect's fingerprint and comparison functions, with an install hint when it is missing."""
    try:
        from copydetect import CodeFingerprint, compare_files
    except ImportError:
        raise SystemExit(
            "error: `segkit similarity` needs copydetect: `make setup` installs it, or "
            "`pip install copydetect==0.5.0` (requirements-dev.txt)"
        ) from None
    return CodeFingerprint, compare_files


# --- what is compared ---------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One body of code compared: a student's submission or a corpus entry.

    ``cells`` maps grade_id -> code for a submission or the kit's solution; a corpus file has no
    cells and its whole ``text`` stands for every unit."""

    name: str
    kind: str  # STUDENT or CORPUS
    cells: dict[str, str] = field(default_factory=dict)
    text: str | None = None  # a corpus file's content
    origin: str = ""  # where it came from, for the report

    def code(self, unit: str, grade_ids: list[str]) -> str:
        """The code compared (and shown) for `unit` (a grade_id or WHOLE); "" when the submission has none."""
        if self.text is not None:
            return normalise_code(self.text)
        if unit != WHOLE:
            return normalise_code(self.cells.get(unit, ""))
        cells = [f"# --- {gid} ---\n{normalise_code(self.cells[gid])}" for gid in grade_ids if self.cells.get(gid)]
        return "\n\n".join(cells)


def normalise_code(text: str) -> str:
    """Unix line ends and no leading blank lines: pygments (copydetect's tokenizer) converts the one and
    strips the other before tokenizing, which would shift every highlighted range of the original text."""
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\n")


def graded_code(notebook: dict, grade_ids: list[str]) -> dict[str, str]:
    """A notebook's graded code cells by grade_id (a grade_id in several cells: all of them, joined).

    Inputs:
        notebook: a parsed notebook (dict with "cells"); grade_ids: the assignment's graded units.
    Returns:
        {grade_id: source} for the grade_ids present in code cells.
    """
    found = cells_by_grade_id(notebook)
    cells = {}
    for grade_id in grade_ids:
        sources = [cell_source(c) for c in found.get(grade_id, []) if c.get("cell_type") == "code"]
        if sources:
            cells[grade_id] = "\n\n".join(sources)
    return cells


def student_source(student: str, notebook_path: Path, grade_ids: list[str]) -> Source | None:
    """A submission as a Source, or None (with a warning) when its notebook cannot be read."""
    try:
        notebook = read_notebook(notebook_path)
    except (NotebookError, OSError) as exc:
        print(f"warning: {student}: {notebook_path} skipped: {exc}", file=sys.stderr)
        return None
    return Source(student, STUDENT, graded_code(notebook, grade_ids), origin=str(notebook_path))


def corpus_dir(assignment: str) -> Path:
    return REPO_ROOT / "assignments" / assignment / CORPUS_DIR_NAME


def corpus_sources(spec: AssignmentSpec, folder: Path | None = None) -> list[Source]:
    """The kit's solution (its graded cells, read from solutions/ now) and every .py file of `folder`
    (default ``assignments/<a>/similarity_corpus/``), named ``corpus:<path without .py>``."""
    solution = Source(
        SOLUTION_NAME,
        CORPUS,
        {u.grade_id: u.source for u in spec.auto_units},
        origin=str(spec.solution_path.relative_to(REPO_ROOT)),
    )
    folder = corpus_dir(spec.name) if folder is None else folder
    files = sorted(folder.rglob("*.py")) if folder.is_dir() else []
    entries = [
        Source(
            CORPUS_PREFIX + path.relative_to(folder).with_suffix("").as_posix(),
            CORPUS,
            text=path.read_text(encoding="utf-8", errors="replace"),
            origin=str(path),
        )
        for path in files
    ]
    return [solution, *entries]


def boilerplate_texts(spec: AssignmentSpec) -> dict[str, str]:
    """What students were given, by where it comes from: the released notebook's code cells (stubs
    and given cells), the starter package and the assignment's public checks."""
    texts = {}
    if spec.release_path.exists():
        released = read_notebook(spec.release_path)
        grade_ids = [u.grade_id for u in spec.auto_units]
        # The stubs also joined as a whole submission is joined, so that the seams between cells count as given.
        stubs_whole = Source("released", STUDENT, graded_code(released, grade_ids)).code(WHOLE, grade_ids)
        cells = [cell_source(c) for c in released["cells"] if c.get("cell_type") == "code"]
        texts[str(spec.release_path.relative_to(REPO_ROOT))] = "\n\n".join([*cells, stubs_whole])
    for path in sorted((REPO_ROOT / "starter").rglob("*.py")):
        texts[str(path.relative_to(REPO_ROOT))] = path.read_text(encoding="utf-8")
    public = spec.folder / "public_checks.py"
    if public.is_file():
        texts[str(public.relative_to(REPO_ROOT))] = public.read_text(encoding="utf-8")
    return texts


# --- comparing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One comparison that shares code. A is always a student; B a student or a corpus entry."""

    unit: str
    name_a: str
    name_b: str
    kind_b: str
    similarity_a: float  # share of A's own code (boilerplate excluded) that B also has
    similarity_b: float
    tokens_overlap: int  # matching normalised characters in A
    tokens_a: int  # A's own normalised characters considered (boilerplate excluded)
    tokens_b: int
    code_a: str
    code_b: str
    slices_a: np.ndarray  # 2 x N: starts and ends of the matching ranges in code_a
    slices_b: np.ndarray

    @property
    def score(self) -> float:
        return max(self.similarity_a, self.similarity_b)


def repair_class_offsets(filtered: str, offsets: np.ndarray) -> np.ndarray:
    """copydetect 0.5.0's offsets (filtered position -> characters removed before it) with the entries of
    class names corrected: filter_code records a class name's length there instead of the running
    offset, which would misplace a highlight that starts or ends at a class name. The entry after it
    holds the running offset after the name, i.e. the right value plus that length.

    Inputs:
        filtered: the normalised code; offsets: N x 2 ints [position in `filtered`, offset].
    Returns:
        a corrected copy of `offsets`.
    """
    fixed = np.array(offsets, copy=True)
    for j in range(len(fixed) - 1):
        position = int(offsets[j, 0])
        first_at_position = j == 0 or offsets[j - 1, 0] != position
        if first_at_position and 0 <= position < len(filtered) and filtered[position] == "O":
            fixed[j, 1] = offsets[j + 1, 1] - offsets[j, 1]
    return fixed


def _fingerprint(text: str, noise: int):
    # window 1 = every k-gram is a fingerprint (copydetect's guarantee threshold = noise threshold):
    # exact on inputs this small.
    code_fingerprint, _ = _copydetect()
    return code_fingerprint("cell.py", noise, 1, language="python", fp=io.StringIO(text))


@functools.lru_cache(maxsize=256)
def _boilerplate_hashes(text: str, noise: int) -> frozenset[int]:
    """Fingerprint hashes of one boilerplate text, kept for the process: the starter package is the
    same for every assignment and takes seconds to tokenize."""
    return frozenset(_fingerprint(text, noise).hashes)


class Fingerprinter:
    """copydetect fingerprints of code texts, with the boilerplate removed, each computed once."""

    def __init__(self, boilerplate: Iterable[str], noise: int = NOISE_CHARS):
        self.code_fingerprint, self.compare_files = _copydetect()
        from copydetect.utils import get_token_coverage

        self.token_coverage = get_token_coverage
        self.noise = noise
        self.boilerplate = frozenset(h for text in boilerplate for h in _boilerplate_hashes(text, noise))
        self._memo: dict[str, object] = {}

    def _fingerprint(self, text: str):
        return _fingerprint(text, self.noise)

    def __call__(self, text: str):
        """The fingerprint of `text` without the boilerplate's hashes.

        The boilerplate is removed here rather than by copydetect's `boilerplate=` argument: copydetect
        0.5.0 removes it with np.intersect1d(assume_unique=True) on hashes that are not unique, which
        also drops every repeated k-gram of the code but its last occurrence (repeated lines, e.g. a
        network's layers, would count and be highlighted once)."""
        if text not in self._memo:
            fingerprint = self._fingerprint(text)
            fingerprint.offsets = repair_class_offsets(fingerprint.filtered_code, fingerprint.offsets)
            if self.boilerplate:
                fingerprint.hashes = fingerprint.hashes - self.boilerplate
                fingerprint.hash_idx = {h: i for h, i in fingerprint.hash_idx.items() if h in fingerprint.hashes}
                fingerprint.token_coverage = self.token_coverage(
                    fingerprint.hash_idx, fingerprint.k, len(fingerprint.filtered_code)
                )
            self._memo[text] = fingerprint
        return self._memo[text]

    def compare(self, unit: str, a: Source, code_a: str, b: Source, code_b: str) -> Pair | None:
        first, second = self(code_a), self(code_b)
        if not first.hashes or not second.hashes:
            return None
        overlap, (similarity_a, similarity_b), (slices_a, slices_b) = self.compare_files(first, second)
        if overlap <= 0:
            return None
        return Pair(
            unit,
            a.name,
            b.name,
            b.kind,
            float(similarity_a),
            float(similarity_b),
            int(overlap),
            int(first.token_coverage),
            int(second.token_coverage),
            code_a,
            code_b,
            np.asarray(slices_a),
            np.asarray(slices_b),
        )


@dataclass
class SimilarityReport:
    assignment: str
    students: list[Source]
    corpus: list[Source]
    units: list[str]  # grade_ids, then WHOLE
    pairs: list[Pair]  # every pair sharing code, ranked
    threshold: float
    min_overlap: int
    noise: int
    boilerplate: list[str]

    def is_flagged(self, pair: Pair) -> bool:
        return pair.score >= self.threshold and pair.tokens_overlap >= self.min_overlap

    @property
    def flagged(self) -> list[Pair]:
        return [p for p in self.pairs if self.is_flagged(p)]


def analyse(
    spec: AssignmentSpec,
    students: list[Source],
    corpus: list[Source] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_overlap: int = MIN_OVERLAP,
    noise: int = NOISE_CHARS,
    exclude_boilerplate: bool = True,
) -> SimilarityReport:
    """Compare every graded unit (and the whole submission) of every pair of students, and of every
    student with every corpus entry (default: the solution and assignments/<a>/similarity_corpus/).

    Inputs:
        spec: the assignment; students: one Source per submission (unique names).
        exclude_boilerplate: False compares the stubs too (only to show what the exclusion removes).
    Returns:
        a SimilarityReport whose pairs (those sharing any code) are ranked by score, then overlap.
    """
    corpus = corpus_sources(spec) if corpus is None else corpus
    grade_ids = [u.grade_id for u in spec.auto_units]
    units = [*grade_ids, WHOLE]
    boilerplate = boilerplate_texts(spec) if exclude_boilerplate else {}
    fingerprints = Fingerprinter(boilerplate.values(), noise)
    students = sorted(students, key=lambda s: s.name)
    todo = [(a, b) for i, a in enumerate(students) for b in students[i + 1 :]] + [
        (a, b) for a in students for b in corpus
    ]
    pairs = []
    with tqdm(total=len(todo) * len(units), desc=f"similarity {spec.name}", unit="pair", disable=None) as progress:
        for unit in units:
            for a, b in todo:
                pair = fingerprints.compare(unit, a, a.code(unit, grade_ids), b, b.code(unit, grade_ids))
                if pair is not None:
                    pairs.append(pair)
                progress.update()
    order = {unit: index for index, unit in enumerate(units)}
    pairs.sort(key=lambda p: (-p.score, -p.tokens_overlap, order[p.unit], p.name_a, p.name_b))
    return SimilarityReport(
        spec.name, students, corpus, units, pairs, threshold, min_overlap, noise, sorted(boilerplate)
    )


# --- output -------------------------------------------------------------------------------

CSV_COLUMNS = (
    "rank",
    "flagged",
    "unit",
    "student_a",
    "student_b",
    "b_kind",
    "similarity_a",
    "similarity_b",
    "score",
    "tokens_overlap",
    "tokens_a",
    "tokens_b",
)


def write_csv(report: SimilarityReport, path: Path) -> Path:
    """pairs.csv: every pair that shares code, ranked (flagged ones first, by construction)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for rank, pair in enumerate(report.pairs, start=1):
            writer.writerow(
                [
                    rank,
                    int(report.is_flagged(pair)),
                    pair.unit,
                    pair.name_a,
                    pair.name_b,
                    pair.kind_b,
                    f"{pair.similarity_a:.3f}",
                    f"{pair.similarity_b:.3f}",
                    f"{pair.score:.3f}",
                    pair.tokens_overlap,
                    pair.tokens_a,
                    pair.tokens_b,
                ]
            )
    return path


def _match_mask(code: str, slices: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(code), dtype=bool)
    if slices.ndim == 2 and slices.shape[1]:
        for start, end in zip(slices[0].astype(int), slices[1].astype(int)):
            mask[max(start, 0) : max(end, 0)] = True
    return mask


def highlighted_lines(code: str, slices: np.ndarray) -> list[tuple[bool, str]]:
    """The code's lines as (matched, html): matched runs inside <mark>; a line is matched when one of
    its non-blank characters is.

    Inputs:
        code: the text compared; slices: 2 x N starts/ends of the matching ranges (copydetect).
    Returns:
        one (matched, escaped html) per line of `code`.
    """
    mask = _match_mask(code, slices)
    lines, start = [], 0
    for line in code.split("\n"):
        end = start + len(line)
        line_mask = mask[start:end]
        parts, run_start = [], 0
        for index in range(1, len(line) + 1):
            if index == len(line) or line_mask[index] != line_mask[run_start]:
                text = html.escape(line[run_start:index])
                parts.append(f"<mark>{text}</mark>" if line_mask[run_start] else text)
                run_start = index
        matched = any(flag and not char.isspace() for flag, char in zip(line_mask, line))
        lines.append((matched, "".join(parts)))
        start = end + 1
    return lines


def _label(name: str, kind: str, corpus: dict[str, Source]) -> str:
    if kind == STUDENT:
        return f'{html.escape(name)} <span class="badge student">student</span>'
    what = "the kit's solution" if name == SOLUTION_NAME else html.escape(Path(corpus[name].origin).name)
    return f'{html.escape(name)} <span class="badge corpus">corpus: {what}</span>'


def _code_table(code: str, slices: np.ndarray) -> str:
    hit = ' class="hit"'
    rows = [
        f'<tr{hit if matched else ""}><td class="ln">{number}</td><td class="src">{text}</td></tr>'
        for number, (matched, text) in enumerate(highlighted_lines(code, slices), start=1)
    ]
    return '<table class="code">' + "".join(rows) + "</table>"


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table.rank{border-collapse:collapse;margin:1em 0}
table.rank td,table.rank th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
table.rank td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{font-size:.75em;padding:.1em .4em;border-radius:.3em;color:#fff}
.badge.student{background:#3465a4}.badge.corpus{background:#a40000}
.pair{border-top:2px solid #888;margin-top:2em;padding-top:.5em}
.side{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.side>div{overflow-x:auto;border:1px solid #ddd}
table.code{border-collapse:collapse;font-family:ui-monospace,monospace;font-size:12px;width:100%}
table.code td{padding:0 .4em;white-space:pre;vertical-align:top}
table.code td.ln{color:#999;text-align:right;user-select:none;border-right:1px solid #ddd}
table.code tr.hit td.src{background:#fff3c4}
mark{background:#ffb454;color:inherit}
p.note{color:#555;max-width:60em}
"""


def render_html(report: SimilarityReport) -> str:
    """report.html: the settings, the flagged pairs ranked, then each flagged pair side by side."""
    flagged = report.flagged
    corpus = {source.name: source for source in report.corpus}
    student_names = ", ".join(html.escape(s.name) for s in report.students) or "none"
    corpus_names = ", ".join(html.escape(s.name) for s in report.corpus) or "none"
    head = [
        f"<h1>Similarity report: {html.escape(report.assignment)}</h1>",
        f"<p>{len(report.students)} submissions ({student_names}); corpus: {corpus_names}; "
        f"units: {', '.join(html.escape(u) for u in report.units)}.</p>",
        f"<p><b>{len(flagged)}</b> pair(s) flagged: score (the larger of the two shares) &ge; {report.threshold:g} "
        f"and at least {report.min_overlap} matching normalised characters. "
        f"{len(report.pairs)} pair(s) share any code (all in pairs.csv).</p>",
        '<p class="note">A share is the part of one side\'s own code (what students were given removed) '
        f"found in the other, in runs of at least {report.noise} characters after copydetect's "
        "normalisation (identifiers, strings and comments do not count, so renaming changes nothing). "
        "A high score is a reason to look, not a verdict: short cells and code fixed by the contract "
        "(a network's layers) are naturally alike. Not counted as similar (boilerplate): "
        f"{', '.join(html.escape(b) for b in report.boilerplate) or 'nothing'}.</p>",
    ]
    if not flagged:
        head.append("<p>No pair reaches the threshold.</p>")
        return _page(report, head)
    rows = []
    for rank, pair in enumerate(flagged, start=1):
        anchor = f'<a href="#pair-{rank}">{rank}</a>' if rank <= MAX_DETAILED else str(rank)
        rows.append(
            f'<tr><td class="num">{anchor}</td><td>{_label(pair.name_a, STUDENT, corpus)}</td>'
            f"<td>{_label(pair.name_b, pair.kind_b, corpus)}</td><td>{html.escape(pair.unit)}</td>"
            f'<td class="num">{pair.similarity_a:.0%}</td><td class="num">{pair.similarity_b:.0%}</td>'
            f'<td class="num">{pair.tokens_overlap}</td></tr>'
        )
    head.append(
        '<table class="rank"><tr><th>#</th><th>A</th><th>B</th><th>unit</th><th>share of A</th>'
        "<th>share of B</th><th>matching characters</th></tr>" + "".join(rows) + "</table>"
    )
    if len(flagged) > MAX_DETAILED:
        head.append(f"<p>The code of the first {MAX_DETAILED} pairs is shown below; pairs.csv lists every pair.</p>")
    for rank, pair in enumerate(flagged[:MAX_DETAILED], start=1):
        head.append(
            f'<div class="pair" id="pair-{rank}"><h2>#{rank} &middot; {html.escape(pair.unit)}: '
            f"{pair.similarity_a:.0%} of A, {pair.similarity_b:.0%} of B</h2>"
            f'<div class="side"><div><h3>A: {_label(pair.name_a, STUDENT, corpus)}</h3>'
            f"{_code_table(pair.code_a, pair.slices_a)}</div>"
            f"<div><h3>B: {_label(pair.name_b, pair.kind_b, corpus)}</h3>"
            f"{_code_table(pair.code_b, pair.slices_b)}</div></div></div>"
        )
    return _page(report, head)


def _page(report: SimilarityReport, body: list[str]) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Similarity: {html.escape(report.assignment)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def write_report(report: SimilarityReport, out_dir: Path) -> tuple[Path, Path]:
    """``out_dir/report.html`` and ``out_dir/pairs.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    return page, write_csv(report, out_dir / "pairs.csv")


# --- command ------------------------------------------------------------------------------


def find_submissions(paths: list[Path], assignment: str | None, unpack_root: Path) -> dict[str, list[tuple[str, Path]]]:
    """{assignment: [(student, notebook), ...]} found the way `segkit grade` finds them."""
    from grader.cli import discover  # imports the grading engine (and torch): only when run

    found: dict[str, list[tuple[str, Path]]] = {}
    for job in discover([p.resolve() for p in paths], assignment, unpack_root):
        if assignment and job.assignment != assignment:
            continue
        found.setdefault(job.assignment, []).append((job.student, job.notebook))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segkit similarity",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, help="submission folders, notebooks or zips (none: the bundled examples)"
    )
    parser.add_argument("--assignment", help="only this assignment (and the assignment of loose notebooks)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"flag a pair when the larger share of matching code reaches this (0..1, default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--min-overlap",
        type=int,
        default=MIN_OVERLAP,
        help=f"and at least this many normalised characters match (default {MIN_OVERLAP})",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        help=f"folder of .py files to compare with (default assignments/<a>/{CORPUS_DIR_NAME}/; "
        "the kit's solution is always included)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default grades/similarity)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    if not 0 <= options.threshold <= 1:
        raise SystemExit(f"error: --threshold {options.threshold} is not between 0 and 1")
    if options.assignment and options.assignment not in assignment_names():
        raise SystemExit(f"error: unknown assignment {options.assignment!r}; known: {', '.join(assignment_names())}")
    paths = options.paths
    if not paths:
        from segkit.proof.examples import EXAMPLES_DIR, build_examples

        build_examples(assignments=[options.assignment] if options.assignment else None)
        print(f"No submissions given: comparing the bundled examples in {EXAMPLES_DIR.relative_to(REPO_ROOT)}/")
        paths = [EXAMPLES_DIR]
    with tempfile.TemporaryDirectory(prefix="segkit-similarity-") as unpack_root:
        found = find_submissions(paths, options.assignment, Path(unpack_root))
        if not found:
            print("No submissions found.", file=sys.stderr)
            return 1
        for name in sorted(found):
            spec = load_assignment(name)
            grade_ids = [u.grade_id for u in spec.auto_units]
            students = [student_source(student, path, grade_ids) for student, path in found[name]]
            students = [s for s in students if s is not None]
            corpus = corpus_sources(spec, options.corpus)
            report = analyse(spec, students, corpus, threshold=options.threshold, min_overlap=options.min_overlap)
            page, table = write_report(report, options.out.resolve() / name)
            shown = page.relative_to(REPO_ROOT) if REPO_ROOT in page.parents else page
            print(
                f"{name}: {len(students)} submission(s), corpus {len(corpus)} entr{'y' if len(corpus) == 1 else 'ies'}, "
                f"{len(report.units)} unit(s): {len(report.flagged)} pair(s) flagged -> {shown} and {table.name}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
