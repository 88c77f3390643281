"""`segkit similarity` (`make similarity`): which submissions share code, ranked, with the matches shown.

    segkit similarity                                  # the bundled example submissions
    segkit similarity submitted/                       # nbgrader layout: <student>/<assignment>/<nb>.ipynb
    segkit similarity hw1/ --assignment fcn            # a folder of <student_id>.ipynb or <student_id>.zip
    segkit similarity ... --alpha 0.01 --out grades/similarity   # (--threshold 0.6: one fixed threshold)

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

Calibration (issue 29: flag copying, not the spec): each unit has its own threshold, from its *null
distribution*, the scores of pairs of independent correct implementations: the solution, the alternatives
of ``assignments/<a>/alternatives.py`` and the files of ``similarity_corpus/independent/`` (each with the
docstrings students receive), and VARIANTS_PER_UNIT generated variants (``independent_variant``: names,
order of independent statements, loops/comprehensions, temporaries, comments); only variants of
different implementations form a pair. A pair is flagged when its score lies above the score that at
most ``--alpha`` of the unit's independent pairs exceed (never below MIN_THRESHOLD), and pairs are ranked
by their empirical p-value in that distribution. The null is computed at report time and cached in
``build/similarity-calibration/`` under a hash of its inputs (``load_or_compute_calibration``).

Output, per assignment, in ``<out>/<assignment>/`` (default ``grades/similarity/<assignment>/``):
``report.html`` (each unit's calibration, the flagged pairs ranked, each side by side with the matching
code highlighted; the corpus side is labelled as such) and ``pairs.csv`` (every pair that shares any
code, ranked, with ``flagged``, ``p_value`` and ``unit_threshold`` columns).

How similarity is measured (copydetect, the winnowing algorithm of MOSS): code is tokenized with
pygments and normalised (every identifier becomes ``V``, function names ``F``, class names ``O``,
strings ``S``; comments and whitespace are dropped), so renaming variables or rewriting comments
changes nothing. Fingerprints are hashes of every run of ``NOISE_CHARS`` normalised characters.
For a pair (A, B), ``similarity_a`` is the share of A's own code (boilerplate excluded) covered by
fingerprints that also occur in B, and ``similarity_b`` the same for B; the score is the larger share.
A pair is flagged when its score lies above its unit's calibrated threshold (or reaches a fixed
``--threshold``) and at least ``--min-overlap`` normalised characters match. All pairs of a unit are
scored at once (``coverage_matrix``: an inverted index of k-gram hashes, exactly copydetect's overlap);
copydetect's own comparison runs only for the pairs shown, for their highlighted ranges.

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
import ast
import csv
import functools
import hashlib
import html
import io
import json
import os
import random
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

DEFAULT_THRESHOLD = 0.6  # a unit without a null distribution (one implementation): the fixed threshold of old
NOISE_CHARS = 25  # copydetect's noise threshold k: the shortest normalised run that counts as a match
MIN_OVERLAP = 40  # a pair sharing fewer normalised characters (about two lines) is never flagged
WHOLE = "whole submission"  # the unit name of the comparison of all graded cells together
CORPUS_PREFIX = "corpus:"
SOLUTION_NAME = CORPUS_PREFIX + "solution"
CORPUS_DIR_NAME = "similarity_corpus"
INDEPENDENT_DIR_NAME = "independent"  # similarity_corpus/independent/: honest implementations, calibration only
DEFAULT_OUT = REPO_ROOT / "grades" / "similarity"
STUDENT, CORPUS = "student", "corpus"
MAX_DETAILED = 300  # flagged pairs whose code report.html shows side by side
MAX_LISTED = 2000  # flagged pairs report.html lists (pairs.csv holds every pair)


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

    def parts(self, unit: str, grade_ids: list[str]) -> list[str]:
        """The texts compared for `unit`, one per cell (a corpus file: the whole file, for every unit)."""
        if self.text is not None:
            return [normalise_code(self.text)]
        wanted = grade_ids if unit == WHOLE else [unit]
        return [normalise_code(self.cells[gid]) for gid in wanted if self.cells.get(gid)]

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
    files = sorted(p for p in folder.rglob("*.py") if INDEPENDENT_DIR_NAME not in p.relative_to(folder).parts[:1])
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


# --- independent variants (the null distribution) -----------------------------------------

RESERVED = frozenset({"self", "cls"})


class _Rename(ast.NodeTransformer):
    """Renames local names (assigned names and loop/comprehension targets) by `mapping`."""

    def __init__(self, mapping: dict[str, str]):
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.mapping.get(node.id, node.id)
        return node


def _local_names(tree: ast.Module) -> set[str]:
    """Names bound inside functions (not parameters, not top-level definitions: the contract names them)."""
    names = set()
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(function):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names - RESERVED


def _names(node: ast.AST, store: bool) -> set[str]:
    wanted = (ast.Store, ast.Del) if store else (ast.Load,)
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, wanted)}


def _independent(first: ast.stmt, second: ast.stmt) -> bool:
    """Two simple assignments that neither read nor write what the other writes (safe to swap)."""
    simple = (ast.Assign, ast.AugAssign, ast.AnnAssign)
    if not (isinstance(first, simple) and isinstance(second, simple)):
        return False
    w1, w2 = _names(first, True), _names(second, True)
    r1, r2 = _names(first, False), _names(second, False)
    if isinstance(first, ast.AugAssign) or isinstance(second, ast.AugAssign):
        return False
    return not (w1 & (w2 | r2) or w2 & r1)


def _statement_lists(tree: ast.AST) -> list[list[ast.stmt]]:
    lists = []
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                lists.append(block)
    return lists


def _reorder(tree: ast.Module, rng: random.Random) -> None:
    """Swaps adjacent independent assignments, about half of those that can be."""
    for block in _statement_lists(tree):
        for i in range(len(block) - 1):
            if _independent(block[i], block[i + 1]) and rng.random() < 0.5:
                block[i], block[i + 1] = block[i + 1], block[i]


def _comprehension_to_loop(block: list[ast.stmt], i: int) -> bool:
    """``x = [e for t in it if c]`` -> ``x = []`` and a for loop appending."""
    node = block[i]
    if not (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.ListComp)
        and len(node.value.generators) == 1
        and not node.value.generators[0].is_async
    ):
        return False
    name, comp = node.targets[0].id, node.value
    generator = comp.generators[0]
    append = ast.Expr(ast.Call(ast.Attribute(ast.Name(name, ast.Load()), "append", ast.Load()), [comp.elt], []))
    body: ast.stmt = append
    for condition in reversed(generator.ifs):
        body = ast.If(condition, [body], [])
    loop = ast.For(generator.target, generator.iter, [body], [], None)
    block[i : i + 1] = [ast.Assign([ast.Name(name, ast.Store())], ast.List([], ast.Load()), lineno=0), loop]
    return True


def _loop_to_comprehension(block: list[ast.stmt], i: int) -> bool:
    """``x = []`` followed by ``for t in it: x.append(e)`` -> ``x = [e for t in it]``."""
    if i + 1 >= len(block):
        return False
    first, loop = block[i], block[i + 1]
    if not (
        isinstance(first, ast.Assign)
        and len(first.targets) == 1
        and isinstance(first.targets[0], ast.Name)
        and isinstance(first.value, ast.List)
        and not first.value.elts
        and isinstance(loop, ast.For)
        and not loop.orelse
        and len(loop.body) == 1
        and isinstance(loop.body[0], ast.Expr)
        and isinstance(loop.body[0].value, ast.Call)
    ):
        return False
    call = loop.body[0].value
    name = first.targets[0].id
    if not (
        isinstance(call.func, ast.Attribute)
        and call.func.attr == "append"
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == name
        and len(call.args) == 1
        and not call.keywords
    ):
        return False
    comp = ast.ListComp(call.args[0], [ast.comprehension(loop.target, loop.iter, [], 0)])
    block[i : i + 2] = [ast.Assign([ast.Name(name, ast.Store())], comp, lineno=0)]
    return True


def _restyle_loops(tree: ast.Module, rng: random.Random) -> None:
    for block in _statement_lists(tree):
        i = 0
        while i < len(block):
            if rng.random() < 0.7 and (_comprehension_to_loop(block, i) or _loop_to_comprehension(block, i)):
                i += 1
            i += 1


def _hoist_temporaries(tree: ast.Module, rng: random.Random, fresh) -> None:
    """Moves a call's argument that is itself a computation into a temporary of its own, or names a
    returned expression before returning it (the "different temporaries" of independent code)."""
    for block in _statement_lists(tree):
        i = 0
        while i < len(block):
            node = block[i]
            if isinstance(node, ast.Return) and isinstance(node.value, (ast.Call, ast.BinOp)) and rng.random() < 0.4:
                name = fresh()
                block[i : i + 1] = [
                    ast.Assign([ast.Name(name, ast.Store())], node.value, lineno=0),
                    ast.Return(ast.Name(name, ast.Load())),
                ]
                i += 2
                continue
            if isinstance(node, (ast.Assign, ast.Return, ast.Expr)) and node.value is not None:
                calls = [c for c in ast.walk(node.value) if isinstance(c, ast.Call)]
                arguments = [a for c in calls for a in c.args if isinstance(a, (ast.Call, ast.BinOp))]
                if arguments and rng.random() < 0.4:
                    argument = rng.choice(arguments)
                    name = fresh()
                    for call in calls:
                        call.args = [ast.Name(name, ast.Load()) if a is argument else a for a in call.args]
                    block.insert(i, ast.Assign([ast.Name(name, ast.Store())], argument, lineno=0))
                    i += 1
            i += 1


def _inline_temporaries(tree: ast.Module, rng: random.Random) -> None:
    """``t = expr`` used once, in the very next statement, is written inline there."""
    for block in _statement_lists(tree):
        i = 0
        while i < len(block) - 1:
            node, following = block[i], block[i + 1]
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and not isinstance(following, (ast.For, ast.While, ast.If, ast.With, ast.FunctionDef, ast.ClassDef))
                and rng.random() < 0.4
            ):
                name = node.targets[0].id
                loads = [n for n in ast.walk(following) if isinstance(n, ast.Name) and n.id == name]
                later = [n for s in block[i + 2 :] for n in ast.walk(s) if isinstance(n, ast.Name) and n.id == name]
                if len(loads) == 1 and isinstance(loads[0].ctx, ast.Load) and not later:
                    _Replace(name, node.value).visit(following)
                    del block[i]
                    continue
            i += 1


class _Replace(ast.NodeTransformer):
    def __init__(self, name: str, value: ast.expr):
        self.name, self.value = name, value

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return self.value if node.id == self.name and isinstance(node.ctx, ast.Load) else node


class _AugmentedSwap(ast.NodeTransformer):
    """``x = x + y`` <-> ``x += y``."""

    def visit_Assign(self, node: ast.Assign) -> ast.stmt:
        target = node.targets[0]
        if (
            len(node.targets) == 1
            and isinstance(target, ast.Name)
            and isinstance(node.value, ast.BinOp)
            and isinstance(node.value.left, ast.Name)
            and node.value.left.id == target.id
        ):
            return ast.AugAssign(ast.Name(target.id, ast.Store()), node.value.op, node.value.right)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.stmt:
        if isinstance(node.target, ast.Name):
            value = ast.BinOp(ast.Name(node.target.id, ast.Load()), node.op, node.value)
            return ast.Assign([ast.Name(node.target.id, ast.Store())], value, lineno=0)
        return node


COMMENTS = ("# compute it", "# shapes checked above", "# see the lecture notes", "# step", "# TODO tidy", "# done")


def _recomment(code: str, rng: random.Random) -> str:
    lines = []
    for line in code.split("\n"):
        stripped = line.lstrip()
        if stripped and not stripped.startswith(("@", '"', "'", ")", "]", "}")) and rng.random() < 0.2:
            lines.append(line[: len(line) - len(stripped)] + rng.choice(COMMENTS))
        lines.append(line)
    return "\n".join(lines)


def independent_variant(source: str, seed: str) -> str:
    """The same implementation as another student might restyle it: local names renamed, independent
    statements reordered, loops <-> comprehensions, temporaries added or inlined, ``x = x + y`` <->
    ``x += y``, comments rewritten and the layout of ``ast.unparse``. Each transformation applies with
    some probability (seeded by `seed`, so the variants are reproducible). Code that does not parse is
    returned as it is."""
    rng = random.Random(seed)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    # How much this student restyles: from nothing (names and comments only) to everything, uniformly;
    # real classes hold both, and the null must too.
    strength = rng.random()
    counter = iter(range(10**6))
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}

    def fresh() -> str:
        while True:
            name = f"{rng.choice(('tmp', 'val', 'part', 'out', 'res'))}{next(counter)}"
            if name not in taken:
                taken.add(name)
                return name

    steps = [
        lambda: _reorder(tree, rng),
        lambda: _restyle_loops(tree, rng),
        lambda: _hoist_temporaries(tree, rng, fresh),
        lambda: _inline_temporaries(tree, rng),
        lambda: _AugmentedSwap().visit(tree) if rng.random() < 0.5 else None,
    ]
    for step in rng.sample(steps, len(steps)):
        if rng.random() < strength:
            step()
    mapping = {name: fresh() if rng.random() < 0.5 else f"{name}_{next(counter)}" for name in _local_names(tree)}
    _Rename(mapping).visit(tree)
    ast.fix_missing_locations(tree)
    return _recomment(ast.unparse(tree), rng) + "\n"


# --- comparing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
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
    p_value: float = float("nan")  # share of independent pairs of this unit scoring at least as high

    @property
    def score(self) -> float:
        return max(self.similarity_a, self.similarity_b)


@dataclass(frozen=True)
class Match:
    """A pair's evidence: both texts and the matching character ranges (copydetect's own comparison)."""

    similarity_a: float
    similarity_b: float
    tokens_overlap: int
    code_a: str
    code_b: str
    slices_a: np.ndarray  # 2 x N: starts and ends of the matching ranges in code_a
    slices_b: np.ndarray


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


def _fingerprint(text: str, noise: int, filtered: tuple[str, np.ndarray] | None = None):
    # window 1 = every k-gram is a fingerprint (copydetect's guarantee threshold = noise threshold):
    # exact on inputs this small.
    code_fingerprint, _ = _copydetect()
    if filtered is None:
        return code_fingerprint("cell.py", noise, 1, language="python", fp=io.StringIO(text))
    # tokenized already (in a worker process): fingerprint the normalised code, then restore what
    # copydetect's own tokenizing would have set (the original text and the offsets back to it)
    fingerprint = code_fingerprint("cell.py", noise, 1, filter=False, fp=io.StringIO(filtered[0]))
    fingerprint.raw_code, fingerprint.offsets = text, filtered[1]
    return fingerprint


def _filter(text: str) -> tuple[str, np.ndarray]:
    """copydetect's tokenizing and normalising (pygments), the costly step: run in worker processes."""
    from copydetect.utils import filter_code

    return filter_code(text, "cell.py", "python")


PARALLEL_MIN_TEXTS = 200  # fewer texts are tokenized in this process (a pool costs more than it saves)


@functools.lru_cache(maxsize=256)
def _boilerplate_hashes(text: str, noise: int) -> frozenset[int]:
    """Fingerprint hashes of one boilerplate text, kept for the process: the starter package is the
    same for every assignment and takes seconds to tokenize."""
    return frozenset(_fingerprint(text, noise).hashes)


@dataclass(frozen=True)
class Prints:
    """A text's fingerprint as scoring needs it: where each kept k-gram starts, and its hash."""

    positions: np.ndarray  # sorted start positions in the normalised code (boilerplate removed)
    hashes: np.ndarray  # the k-gram hash at each position
    tokens: int  # normalised characters covered by the kept k-grams (the share's denominator)


def covered(positions: np.ndarray, k: int) -> int:
    """Characters covered by k-grams starting at sorted `positions` (copydetect's token count)."""
    if not len(positions):
        return 0
    return int(np.minimum(np.diff(positions), k).sum()) + k


class Fingerprinter:
    """copydetect fingerprints of code texts, with the boilerplate removed, each computed once."""

    def __init__(self, boilerplate: Iterable[str], noise: int = NOISE_CHARS):
        self.code_fingerprint, self.compare_files = _copydetect()
        from copydetect.utils import get_token_coverage

        self.token_coverage = get_token_coverage
        self.noise = noise
        self.boilerplate = frozenset(h for text in boilerplate for h in _boilerplate_hashes(text, noise))
        self._memo: dict[str, object] = {}
        self._prints: dict[str, Prints] = {}
        self._filtered: dict[str, tuple[str, np.ndarray]] = {}  # tokenized by `prefetch`, not fingerprinted yet

    def _fingerprint(self, text: str):
        return _fingerprint(text, self.noise, self._filtered.pop(text, None))

    def prefetch(self, texts: Iterable[str], jobs: int | None = None) -> None:
        """Tokenize the texts not fingerprinted yet in `jobs` processes (default: every CPU); hashing
        stays in this process (Python's string hashes differ between processes)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo and t not in self._filtered))
        jobs = jobs or os.cpu_count() or 1
        if jobs < 2 or len(todo) < PARALLEL_MIN_TEXTS:
            return
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for text, filtered in zip(todo, pool.map(_filter, todo, chunksize=32)):
                self._filtered[text] = filtered

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

    def prints(self, text: str) -> Prints:
        """The positions and hashes of `text`'s kept k-grams (what `score_matrix` compares)."""
        if text not in self._prints:
            fingerprint = self(text)
            items = [(int(i), int(h)) for h, idx in fingerprint.hash_idx.items() for i in idx]
            items.sort()
            positions = np.array([i for i, _ in items], dtype=np.int64)
            hashes = np.array([h for _, h in items], dtype=np.int64)
            self._prints[text] = Prints(positions, hashes, covered(positions, self.noise))
        return self._prints[text]

    def joined(self, texts: list[str]) -> Prints:
        """The prints of several cells taken together (a whole submission), from each cell's own: k-grams
        across the seam between two cells are not counted (they are the stubs' seams, i.e. given code),
        and the cells are not tokenized a second time, which dominated the time of a large class."""
        positions, hashes, start = [], [], 0
        for text in texts:
            prints = self.prints(text)
            positions.append(prints.positions + start)
            hashes.append(prints.hashes)
            start += len(self(text).filtered_code) + self.noise  # a gap: no k-gram spans two cells
        if not positions:
            return Prints(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0)
        joined = np.concatenate(positions)
        return Prints(joined, np.concatenate(hashes), covered(joined, self.noise))

    def compare(self, a: str, b: str) -> Match | None:
        """copydetect's comparison of two texts, with the matching ranges (the report's evidence)."""
        first, second = self(a), self(b)
        if not first.hashes or not second.hashes:
            return None
        overlap, (similarity_a, similarity_b), (slices_a, slices_b) = self.compare_files(first, second)
        if overlap <= 0:
            return None
        return Match(
            float(similarity_a),
            float(similarity_b),
            int(overlap),
            a,
            b,
            np.asarray(slices_a),
            np.asarray(slices_b),
        )


def coverage_matrix(prints: list[Prints], k: int) -> np.ndarray:
    """``C[i, j]``: normalised characters of text i covered by k-grams that text j also has.

    All pairs at once, without comparing pairs that share nothing: an inverted index (hash -> texts
    holding it) gives, for each text i, a boolean matrix "text j has i's k-gram at position p"; the
    characters covered along each row are the union of those k-grams' spans, i.e. the sum over selected
    positions of min(gap to the next selected position, k). Exactly copydetect's ``token_overlap``.

    Inputs:
        prints: one Prints per text; k: the k-gram length (noise threshold).
    Returns:
        an n x n int64 matrix (the diagonal is each text's own coverage).
    """
    n = len(prints)
    result = np.zeros((n, n), dtype=np.int64)
    uniques = [np.unique(p.hashes) for p in prints]
    if not n or not any(len(u) for u in uniques):
        return result
    all_hashes = np.concatenate(uniques)
    owners = np.concatenate([np.full(len(u), i, dtype=np.int64) for i, u in enumerate(uniques)])
    order = np.argsort(all_hashes, kind="stable")
    sorted_hashes, sorted_owners = all_hashes[order], owners[order]
    for i, p in enumerate(prints):
        if not len(p.positions):
            continue
        starts = np.searchsorted(sorted_hashes, p.hashes, side="left")
        ends = np.searchsorted(sorted_hashes, p.hashes, side="right")
        counts = ends - starts
        columns = np.repeat(np.arange(len(p.positions)), counts)
        # the holders of each position's hash: consecutive runs of sorted_owners, gathered without a loop
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = sorted_owners[np.repeat(starts, counts) + offsets]
        sharing, rows = np.unique(rows, return_inverse=True)  # only the texts sharing a k-gram with i
        selected = np.zeros((len(sharing), len(p.positions)), dtype=bool)
        selected[rows, columns] = True
        far = np.iinfo(np.int64).max // 2
        at = np.where(selected, p.positions[None, :], far)
        following = np.minimum.accumulate(at[:, ::-1], axis=1)[:, ::-1]
        following = np.concatenate([following[:, 1:], np.full((len(sharing), 1), far)], axis=1)
        result[i, sharing] = np.where(selected, np.minimum(following - p.positions[None, :], k), 0).sum(axis=1)
    return result


# --- the null distribution: independent correct implementations --------------------------

CALIBRATION_VERSION = 1  # bump when the variants or the scoring change: old caches are then ignored
VARIANTS_PER_UNIT = 24  # generated variants per unit, spread over its independent implementations
WHOLE_NULL_PAIRS = 60  # synthetic independent whole submissions compared for the "whole submission" unit
# At the default threshold at most this share of independent pairs is flagged. The issue asks for at
# most 5 %; 1 % because a class of 500 has 124,750 pairs per unit (5 % would be 6,000 honest pairs).
DEFAULT_ALPHA = 0.01
MIN_THRESHOLD = 0.5  # never flag below this score: the null holds a few implementations, a class many more
SCORE_DECIMALS = 4  # the null's scores are stored rounded to this
ROUNDING = 0.5 * 10**-SCORE_DECIMALS  # a score within this of a stored one equals it
CALIBRATION_DIR = REPO_ROOT / "build" / "similarity-calibration"


def unit_families(spec: AssignmentSpec) -> dict[str, list[str]]:
    """Per graded unit, its independent correct implementations: the solution's cell, every
    alternative of ``assignments/<a>/alternatives.py``, and from each file of
    ``similarity_corpus/independent/`` the top-level definitions the unit's contract names (a file
    defining none of them adds nothing); each with the docstrings students receive."""
    table = {}
    if spec.alternatives_path.is_file():
        from segkit.proof.alternatives import alternatives

        table = alternatives(spec.name)
    # Only similarity_corpus/independent/: a copy source (the rest of the corpus) may itself be a copy of
    # another implementation, and would then make copies look normal.
    files = independent_texts(spec)
    families = {}
    released = released_cells(spec)
    for unit in spec.auto_units:
        found = [unit.source, *table.get(unit.grade_id, ())]
        names = _defined_names(unit.source)
        found += [code for code in (_definitions(text, names) for text in files) if code]
        given = released.get(unit.grade_id)
        families[unit.grade_id] = [with_released_docstrings(code, given) if given else code for code in found]
    return families


def released_cells(spec: AssignmentSpec) -> dict[str, str]:
    """The released notebook's graded cells by grade_id (the stubs students start from)."""
    if not spec.release_path.exists():
        return {}
    return graded_code(read_notebook(spec.release_path), [u.grade_id for u in spec.auto_units])


def independent_texts(spec: AssignmentSpec) -> list[str]:
    """The files of ``assignments/<a>/similarity_corpus/independent/``: known-independent implementations
    written the obvious way (or last term's honest submissions), used for calibration only."""
    folder = corpus_dir(spec.name) / INDEPENDENT_DIR_NAME
    files = sorted(folder.rglob("*.py")) if folder.is_dir() else []
    return [path.read_text(encoding="utf-8", errors="replace") for path in files]


def _defined_names(source: str) -> set[str]:
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return set()
    return {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _definitions(text: str, names: set[str]) -> str:
    """The top-level functions and classes of `text` named in `names`, as source ("" if none)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return ""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    parts = [ast.get_source_segment(text, n) or "" for n in tree.body if isinstance(n, kinds) and n.name in names]
    return "\n\n\n".join(p for p in parts if p)


@dataclass
class UnitNull:
    """One unit's null distribution: (score, overlap) of every pair of independent implementations."""

    unit: str
    implementations: int  # independent implementations it was built from (the solution, alternatives, corpus)
    variants: int  # texts compared (implementations and their generated variants)
    pairs: list[tuple[float, int]]  # (score, matching normalised characters) per independent pair

    def effective(self, min_overlap: int) -> np.ndarray:
        """The scores the flag rule sees, ascending: a pair sharing fewer than `min_overlap` characters counts 0."""
        return np.sort(np.array([s if o >= min_overlap else 0.0 for s, o in self.pairs], dtype=float))

    def threshold(self, alpha: float, min_overlap: int) -> float:
        """The smallest score above which at most `alpha` of the independent pairs lie (flag: score > it),
        never below MIN_THRESHOLD; DEFAULT_THRESHOLD when there is no null (a unit with one implementation)."""
        scores = self.effective(min_overlap)[::-1]
        if not len(scores):
            return DEFAULT_THRESHOLD
        allowed = int(np.floor(alpha * len(scores) + 1e-9))
        return max(float(scores[min(allowed, len(scores) - 1)]), MIN_THRESHOLD)

    def p_values(self, scores: np.ndarray, overlaps: np.ndarray, min_overlap: int) -> np.ndarray:
        """Per pair, (1 + independent pairs scoring at least as high) / (1 + independent pairs): small =
        unlikely between independent authors; NaN without a null."""
        null = self.effective(min_overlap)
        if not len(null):
            return np.full(len(scores), np.nan)
        values = np.where(np.asarray(overlaps) >= min_overlap, np.asarray(scores, dtype=float), 0.0)
        # the null's scores are stored to 4 decimals: a score equal to one of them counts as reaching it
        at_least = len(null) - np.searchsorted(null, values - ROUNDING, side="left")
        return (1 + at_least) / (1 + len(null))

    def p_value(self, score: float, overlap: int, min_overlap: int) -> float:
        return float(self.p_values(np.array([score]), np.array([overlap]), min_overlap)[0])


@dataclass
class Calibration:
    assignment: str
    units: dict[str, UnitNull]
    source: str  # where it came from (the cache file, or "computed")


def independent_pairs(families: list[list[str]]) -> list[tuple[int, int]]:
    """Index pairs of texts from different families (families[f] = texts of implementation f, flattened
    in order): a variant and a variant of *another* implementation are independent; two variants of
    one implementation are a copy restyled, and never part of the null."""
    owner = [f for f, texts in enumerate(families) for _ in texts]
    return [(i, j) for i in range(len(owner)) for j in range(i + 1, len(owner)) if owner[i] != owner[j]]


def _pair_scores(prints: list[Prints], pairs: list[tuple[int, int]], k: int) -> list[tuple[float, int]]:
    matrix = coverage_matrix(prints, k)
    out = []
    for i, j in pairs:
        share_i = matrix[i, j] / prints[i].tokens if prints[i].tokens else 0.0
        share_j = matrix[j, i] / prints[j].tokens if prints[j].tokens else 0.0
        out.append((round(float(max(share_i, share_j)), SCORE_DECIMALS), int(matrix[i, j])))
    return out


def with_released_docstrings(code: str, released: str) -> str:
    """`code` with the docstrings students received (the released cell's) on the functions and classes
    the contract names, as every submission has them; code that does not parse is returned as it is."""
    try:
        tree, given = ast.parse(code), ast.parse(released)
    except SyntaxError:
        return code
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    docs = {n.name: ast.get_docstring(n, clean=False) for n in given.body if isinstance(n, kinds)}
    for node in tree.body:
        doc = docs.get(getattr(node, "name", None))
        if not isinstance(node, kinds) or doc is None:
            continue
        if ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:]
        node.body.insert(0, ast.Expr(ast.Constant(doc)))
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def variant_families(
    assignment: str, unit: str, implementations: list[str], total: int, salt: str = ""
) -> list[list[str]]:
    """Each implementation followed by its generated variants, `total` variants in all (spread evenly)."""
    each = -(-total // max(len(implementations), 1))
    return [
        [code, *(independent_variant(code, f"{assignment}/{unit}/{f}/{v}{salt}") for v in range(each))]
        for f, code in enumerate(implementations)
    ]


def null_for_unit(
    assignment: str, unit: str, implementations: list[str], fingerprints: Fingerprinter, salt: str = ""
) -> tuple[UnitNull, list[list[str]]]:
    families = variant_families(assignment, unit, implementations, VARIANTS_PER_UNIT, salt)
    texts = [normalise_code(t) for family in families for t in family]
    pairs = _pair_scores([fingerprints.prints(t) for t in texts], independent_pairs(families), fingerprints.noise)
    return UnitNull(unit, len(implementations), len(texts), pairs), families


def null_for_whole(
    assignment: str, grade_ids: list[str], families: dict[str, list[list[str]]], fingerprints: Fingerprinter, salt=""
) -> UnitNull:
    """Synthetic pairs of independent whole submissions: for every unit the two sides take variants of two
    different implementations (a unit with one implementation is left out of both)."""
    rng = random.Random(f"{assignment}/whole{salt}")
    usable = [g for g in grade_ids if len(families.get(g, ())) >= 2]
    prints = []
    for _ in range(WHOLE_NULL_PAIRS):
        left, right = [], []
        for gid in usable:
            f, g = rng.sample(range(len(families[gid])), 2)
            left.append(normalise_code(rng.choice(families[gid][f])))
            right.append(normalise_code(rng.choice(families[gid][g])))
        prints += [fingerprints.joined(left), fingerprints.joined(right)]
    pairs = _pair_scores(
        prints,
        [(2 * i, 2 * i + 1) for i in range(WHOLE_NULL_PAIRS)],
        fingerprints.noise,
    )
    implementations = min((len(families[g]) for g in usable), default=0)
    return UnitNull(WHOLE, implementations, len(prints), pairs)


def compute_null(spec: AssignmentSpec, fingerprints: Fingerprinter, salt: str = "") -> dict[str, UnitNull]:
    """Every unit's null distribution (and the whole submission's), from `unit_families` and
    VARIANTS_PER_UNIT generated variants per unit. `salt` draws other variants (a held-out set)."""
    grade_ids = [u.grade_id for u in spec.auto_units]
    nulls, variants = {}, {}
    for gid, implementations in unit_families(spec).items():
        nulls[gid], variants[gid] = null_for_unit(spec.name, gid, implementations, fingerprints, salt)
    nulls[WHOLE] = null_for_whole(spec.name, grade_ids, variants, fingerprints, salt)
    return nulls


def calibration_key(spec: AssignmentSpec, boilerplate: dict[str, str], noise: int) -> str:
    """A hash of everything the null depends on: a changed solution, alternative, corpus file or release
    (or a new version of this code) computes it again."""
    digest = hashlib.sha256()
    families = unit_families(spec)
    parts = [CALIBRATION_VERSION, VARIANTS_PER_UNIT, WHOLE_NULL_PAIRS, noise, sorted(families.items())]
    parts.append(sorted(boilerplate.items()))
    digest.update(json.dumps(parts, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()[:16]


def load_or_compute_calibration(
    spec: AssignmentSpec,
    boilerplate: dict[str, str],
    fingerprints: Fingerprinter,
    cache_dir: Path | None = CALIBRATION_DIR,
) -> Calibration:
    """The assignment's null distributions, from ``build/similarity-calibration/<a>-<key>.json`` when
    that holds them for exactly these inputs, else computed (seconds) and written there."""
    key = calibration_key(spec, boilerplate, fingerprints.noise)
    path = None if cache_dir is None else Path(cache_dir) / f"{spec.name}-{key}.json"
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            units = {
                u["unit"]: UnitNull(u["unit"], u["implementations"], u["variants"], [tuple(p) for p in u["pairs"]])
                for u in data["units"]
            }
            return Calibration(spec.name, units, str(path))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is computed again
    units = compute_null(spec, fingerprints)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"assignment": spec.name, "key": key, "units": [vars(u) for u in units.values()]}
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(payload), encoding="utf-8")
        temporary.replace(path)
    return Calibration(spec.name, units, str(path) if path else "computed")


# --- the report ---------------------------------------------------------------------------


@dataclass
class SimilarityReport:
    assignment: str
    students: list[Source]
    corpus: list[Source]
    units: list[str]  # grade_ids, then WHOLE
    pairs: list[Pair]  # every pair sharing code, ranked (least likely between independent authors first)
    threshold: float | None  # a fixed score threshold for every unit; None: each unit's calibrated one
    min_overlap: int
    noise: int
    boilerplate: list[str]
    calibration: Calibration | None = None
    alpha: float = DEFAULT_ALPHA
    fingerprints: Fingerprinter | None = None  # for the evidence of the pairs shown
    _thresholds: dict[str, float] = field(default_factory=dict, repr=False)

    def unit_threshold(self, unit: str) -> float:
        """The score a pair of `unit` must exceed to be flagged (calibrated unless a fixed one was given)."""
        if self.threshold is not None:
            return self.threshold
        if unit not in self._thresholds:  # (asked once per pair: computed once per unit)
            null = self.calibration.units.get(unit) if self.calibration else None
            self._thresholds[unit] = null.threshold(self.alpha, self.min_overlap) if null else DEFAULT_THRESHOLD
        return self._thresholds[unit]

    def is_flagged(self, pair: Pair) -> bool:
        if pair.tokens_overlap < self.min_overlap:
            return False
        if self.threshold is not None:
            return pair.score >= self.threshold
        return pair.score > self.unit_threshold(pair.unit) + ROUNDING  # (the null is stored rounded)

    @property
    def flagged(self) -> list[Pair]:
        return [p for p in self.pairs if self.is_flagged(p)]

    def source(self, name: str) -> Source:
        return next(s for s in [*self.students, *self.corpus] if s.name == name)

    def evidence(self, pair: Pair) -> Match | None:
        """Both sides' code and the matching ranges (computed only for the pairs shown)."""
        grade_ids = [u for u in self.units if u != WHOLE]
        code_a = self.source(pair.name_a).code(pair.unit, grade_ids)
        code_b = self.source(pair.name_b).code(pair.unit, grade_ids)
        return self.fingerprints.compare(code_a, code_b) if self.fingerprints else None


def unit_pairs(
    unit: str,
    students: list[Source],
    corpus: list[Source],
    grade_ids: list[str],
    fingerprints: Fingerprinter,
    null: UnitNull | None,
    min_overlap: int,
) -> list[Pair]:
    """Every student-student and student-corpus pair of `unit` that shares code, with its p-value."""
    sources = [*students, *corpus]
    prints = [fingerprints.joined(s.parts(unit, grade_ids)) for s in sources]
    matrix = coverage_matrix(prints, fingerprints.noise)
    tokens = np.array([p.tokens for p in prints], dtype=float)
    rows, columns = np.nonzero(np.triu(matrix > 0, k=1)[: len(students)])
    keep = (tokens[rows] > 0) & (tokens[columns] > 0)
    rows, columns = rows[keep], columns[keep]
    share_a = matrix[rows, columns] / tokens[rows]
    share_b = matrix[columns, rows] / tokens[columns]
    overlaps = matrix[rows, columns]
    scores = np.maximum(share_a, share_b)
    p_values = null.p_values(scores, overlaps, min_overlap) if null else np.full(len(rows), np.nan)
    return [
        Pair(
            unit,
            students[i].name,
            sources[j].name,
            sources[j].kind,
            float(sa),
            float(sb),
            int(o),
            int(tokens[i]),
            int(tokens[j]),
            float(p),
        )
        for i, j, sa, sb, o, p in zip(rows.tolist(), columns.tolist(), share_a, share_b, overlaps, p_values)
    ]


def analyse(
    spec: AssignmentSpec,
    students: list[Source],
    corpus: list[Source] | None = None,
    *,
    threshold: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    min_overlap: int = MIN_OVERLAP,
    noise: int = NOISE_CHARS,
    exclude_boilerplate: bool = True,
    calibration: Calibration | None = None,
    cache_dir: Path | None = CALIBRATION_DIR,
    fingerprints: Fingerprinter | None = None,
) -> SimilarityReport:
    """Compare every graded unit (and the whole submission) of every pair of students, and of every
    student with every corpus entry (default: the solution and assignments/<a>/similarity_corpus/).

    Inputs:
        spec: the assignment; students: one Source per submission (unique names).
        threshold: a fixed score threshold for every unit; None (default): each unit's calibrated one,
            above which at most `alpha` of the independent pairs of that unit lie.
        exclude_boilerplate: False compares the stubs too (only to show what the exclusion removes).
        calibration: the null distributions (default: from the cache in `cache_dir`, or computed).
    Returns:
        a SimilarityReport whose pairs (those sharing any code) are ranked by p-value, then by how far
        the score lies above the unit's threshold, then by overlap.
    """
    corpus = corpus_sources(spec) if corpus is None else corpus
    grade_ids = [u.grade_id for u in spec.auto_units]
    units = [*grade_ids, WHOLE]
    boilerplate = boilerplate_texts(spec) if exclude_boilerplate else {}
    if fingerprints is None:  # (a benchmark passes its own, to time tokenizing apart from comparing)
        fingerprints = Fingerprinter(boilerplate.values(), noise)
    if calibration is None:
        calibration = load_or_compute_calibration(spec, boilerplate, fingerprints, cache_dir)
    students = sorted(students, key=lambda s: s.name)
    fingerprints.prefetch(t for s in [*students, *corpus] for unit in grade_ids for t in s.parts(unit, grade_ids))
    pairs = []
    for unit in tqdm(units, desc=f"similarity {spec.name}", unit="unit", disable=None):
        pairs += unit_pairs(unit, students, corpus, grade_ids, fingerprints, calibration.units.get(unit), min_overlap)
    report = SimilarityReport(
        spec.name,
        students,
        corpus,
        units,
        [],
        threshold,
        min_overlap,
        noise,
        sorted(boilerplate),
        calibration,
        alpha,
        fingerprints,
    )
    order = {unit: index for index, unit in enumerate(units)}
    margin = {unit: report.unit_threshold(unit) for unit in units}
    pairs.sort(
        key=lambda p: (
            1.0 if np.isnan(p.p_value) else p.p_value,
            -(p.score - margin[p.unit]),
            -p.tokens_overlap,
            order[p.unit],
            p.name_a,
            p.name_b,
        )
    )
    report.pairs = pairs
    return report


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
    "p_value",
    "unit_threshold",
)


def write_csv(report: SimilarityReport, path: Path) -> Path:
    """pairs.csv: every pair that shares code, ranked by p-value (the least likely between independent
    authors first), with the unit's threshold, so that another cut can be chosen from the whole list."""
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
                    "" if np.isnan(pair.p_value) else f"{pair.p_value:.4f}",
                    f"{report.unit_threshold(pair.unit):.3f}",
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


def _unit_table(report: SimilarityReport) -> str:
    """Per unit: how its threshold was calibrated and what was flagged."""
    flagged = {}
    for pair in report.flagged:
        flagged[pair.unit] = flagged.get(pair.unit, 0) + 1
    rows = []
    for unit in report.units:
        null = report.calibration.units.get(unit) if report.calibration else None
        if null and null.pairs:
            scores = null.effective(report.min_overlap)
            threshold = report.unit_threshold(unit)
            above = np.count_nonzero(scores > threshold if report.threshold is None else scores >= threshold)
            calibration = (
                f'<td class="num">{null.implementations}</td><td class="num">{len(null.pairs)}</td>'
                f'<td class="num">{np.quantile(scores, 0.5):.2f}</td><td class="num">{scores.max():.2f}</td>'
                f'<td class="num">{above / len(scores):.1%}</td>'
            )
        else:
            calibration = '<td colspan="5">no null distribution (fewer than two independent implementations)</td>'
        rows.append(
            f"<tr><td>{html.escape(unit)}</td>{calibration}"
            f'<td class="num">{report.unit_threshold(unit):.2f}</td><td class="num">{flagged.get(unit, 0)}</td></tr>'
        )
    return (
        '<table class="rank"><tr><th>unit</th><th>independent implementations</th><th>independent pairs</th>'
        "<th>their median score</th><th>their highest</th><th>of them flagged</th><th>threshold</th>"
        "<th>pairs flagged</th></tr>" + "".join(rows) + "</table>"
    )


def _p_text(pair: Pair) -> str:
    return "n/a" if np.isnan(pair.p_value) else f"{pair.p_value:.3f}"


def render_html(report: SimilarityReport) -> str:
    """report.html: the settings and each unit's calibration, the flagged pairs ranked by p-value,
    then each flagged pair side by side."""
    flagged = report.flagged
    corpus = {source.name: source for source in report.corpus}
    student_names = ", ".join(html.escape(s.name) for s in report.students) or "none"
    corpus_names = ", ".join(html.escape(s.name) for s in report.corpus) or "none"
    if report.threshold is None:
        rule = (
            f"score above its unit's threshold, calibrated so that at most {report.alpha:.0%} of pairs of "
            "independent correct implementations of that unit would be flagged"
        )
    else:
        rule = f"score (the larger of the two shares) &ge; {report.threshold:g} in every unit (a fixed threshold)"
    head = [
        f"<h1>Similarity report: {html.escape(report.assignment)}</h1>",
        f"<p>{len(report.students)} submissions ({student_names}); corpus: {corpus_names}; "
        f"units: {', '.join(html.escape(u) for u in report.units)}.</p>",
        f"<p><b>{len(flagged)}</b> pair(s) flagged: {rule}, and at least {report.min_overlap} matching "
        f"normalised characters. {len(report.pairs)} pair(s) share any code (all in pairs.csv).</p>",
        '<p class="note">A share is the part of one side\'s own code (what students were given removed) '
        f"found in the other, in runs of at least {report.noise} characters after copydetect's "
        "normalisation (identifiers, strings and comments do not count, so renaming changes nothing). "
        "Pairs are ranked by their <i>p-value</i>: the share of pairs of independent correct implementations "
        "of the same unit (the kit's solution, its alternatives, the corpus, and generated restyled variants "
        "of each) that score at least as high. A unit whose contract fixes most of the code has a high "
        "threshold, a unit with room for different solutions a low one. A flag is a reason to look, not "
        "a verdict. Not counted as similar (boilerplate): "
        f"{', '.join(html.escape(b) for b in report.boilerplate) or 'nothing'}.</p>",
        "<h2>Units</h2>",
        _unit_table(report),
    ]
    if not flagged:
        head.append("<p>No pair is flagged.</p>")
        return _page(report, head)
    rows = []
    for rank, pair in enumerate(flagged[:MAX_LISTED], start=1):
        anchor = f'<a href="#pair-{rank}">{rank}</a>' if rank <= MAX_DETAILED else str(rank)
        rows.append(
            f'<tr><td class="num">{anchor}</td><td>{_label(pair.name_a, STUDENT, corpus)}</td>'
            f"<td>{_label(pair.name_b, pair.kind_b, corpus)}</td><td>{html.escape(pair.unit)}</td>"
            f'<td class="num">{_p_text(pair)}</td><td class="num">{pair.score:.2f}</td>'
            f'<td class="num">{report.unit_threshold(pair.unit):.2f}</td>'
            f'<td class="num">{pair.similarity_a:.0%}</td><td class="num">{pair.similarity_b:.0%}</td>'
            f'<td class="num">{pair.tokens_overlap}</td></tr>'
        )
    head.append(
        "<h2>Flagged pairs</h2>"
        '<table class="rank"><tr><th>#</th><th>A</th><th>B</th><th>unit</th><th>p-value</th><th>score</th>'
        "<th>unit threshold</th><th>share of A</th><th>share of B</th><th>matching characters</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    if len(flagged) > MAX_LISTED:
        head.append(
            f"<p>The first {MAX_LISTED} of {len(flagged)} flagged pairs are listed; pairs.csv lists every pair.</p>"
        )
    if len(flagged) > MAX_DETAILED:
        head.append(f"<p>The code of the first {MAX_DETAILED} pairs is shown below; pairs.csv lists every pair.</p>")
    for rank, pair in enumerate(flagged[:MAX_DETAILED], start=1):
        match = report.evidence(pair)
        if match is None:
            continue
        head.append(
            f'<div class="pair" id="pair-{rank}"><h2>#{rank} &middot; {html.escape(pair.unit)}: '
            f"{pair.similarity_a:.0%} of A, {pair.similarity_b:.0%} of B (p = {_p_text(pair)}, "
            f"threshold {report.unit_threshold(pair.unit):.2f})</h2>"
            f'<div class="side"><div><h3>A: {_label(pair.name_a, STUDENT, corpus)}</h3>'
            f"{_code_table(match.code_a, match.slices_a)}</div>"
            f"<div><h3>B: {_label(pair.name_b, pair.kind_b, corpus)}</h3>"
            f"{_code_table(match.code_b, match.slices_b)}</div></div></div>"
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


def submission_paths(paths: list[Path], assignment: str | None, doing: str) -> list[Path]:
    """The folders a command reads submissions from: `paths`, or the bundled examples (built first) when
    none is given. Exits with a message for an unknown assignment."""
    if assignment and assignment not in assignment_names():
        raise SystemExit(f"error: unknown assignment {assignment!r}; known: {', '.join(assignment_names())}")
    if paths:
        return paths
    from segkit.proof.examples import EXAMPLES_DIR, build_examples

    build_examples(assignments=[assignment] if assignment else None)
    print(f"No submissions given: {doing} the bundled examples in {EXAMPLES_DIR.relative_to(REPO_ROOT)}/")
    return [EXAMPLES_DIR]


def find_submissions(paths: list[Path], assignment: str | None, unpack_root: Path) -> dict[str, list[tuple[str, Path]]]:
    """{assignment: [(student, notebook), ...]} found the way `segkit grade` finds them."""
    from grader.run.discovery import discover  # imports the grading engine (and torch): only when run

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
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="calibrate each unit's threshold so that at most this share of pairs of independent correct "
        f"implementations is flagged (default {DEFAULT_ALPHA})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="instead, flag a pair when the larger share of matching code reaches this fixed score in every unit (0..1)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="compute the calibration again instead of reading build/similarity-calibration/",
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
    if options.threshold is not None and not 0 <= options.threshold <= 1:
        raise SystemExit(f"error: --threshold {options.threshold} is not between 0 and 1")
    if not 0 < options.alpha < 1:
        raise SystemExit(f"error: --alpha {options.alpha} is not between 0 and 1")
    paths = submission_paths(options.paths, options.assignment, "comparing")
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
            report = analyse(
                spec,
                students,
                corpus,
                threshold=options.threshold,
                alpha=options.alpha,
                min_overlap=options.min_overlap,
                cache_dir=None if options.no_cache else CALIBRATION_DIR,
            )
            page, table = write_report(report, options.out.resolve() / name)
            shown = page.relative_to(REPO_ROOT) if REPO_ROOT in page.parents else page
            print(
                f"{name}: {len(students)} submission(s), corpus {len(corpus)} entr{'y' if len(corpus) == 1 else 'ies'}, "
                f"{len(report.units)} unit(s): {len(report.flagged)} pair(s) flagged -> {shown} and {table.name}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
