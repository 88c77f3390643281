"""The similarity report (`segkit similarity`, segkit/similarity.py) on submissions generated from the kit.

Per assignment, six students: alice and bob wrote every unit independently (the two correct
alternatives of assignments/<a>/alternatives.py), carol handed in alice's code disguised (every name
it binds renamed, every comment rewritten, the spacing changed), dave the kit's solution disguised
the same way, erin and frank the released notebook untouched. Copies must be flagged, independent
work and untouched stubs must not, and the kit's own solution must be in the corpus.
"""

from __future__ import annotations

import ast
import csv
import io
import tokenize
from pathlib import Path

import numpy as np
import pytest

from grader.assignments import assignment_names, load_assignment, read_notebook
from segkit import similarity
from segkit.build import release
from segkit.proof.alternatives import alternatives
from segkit.proof.examples import replace_sources
from starter.common import notebook_text

ASSIGNMENTS = assignment_names()
INDEPENDENT, COPIER, SOURCE = "alice", "carol", "bob"
UNTOUCHED = ("erin", "frank")


def disguise(source: str) -> str:
    """The same code as a copier hands it in: every name it binds renamed, every comment rewritten,
    the spacing changed (tokens re-joined by tokenize's compatibility mode)."""
    tree = ast.parse(source)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)} - {"self"}
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        text = token.string
        if token.type == tokenize.NAME and text in bound:
            text = f"my_{text}_2"
        elif token.type == tokenize.COMMENT:
            text = "# my own idea"
        tokens.append((token.type, text))
    return tokenize.untokenize(tokens)


def alternative_units(assignment: str) -> list[str]:
    """The graded units that have two alternatives (a unit still without them stays a stub for alice, bob, carol)."""
    table = alternatives(assignment)
    return [u.grade_id for u in load_assignment(assignment).auto_units if len(table.get(u.grade_id, ())) >= 2]


def class_notebooks(assignment: str) -> dict[str, dict]:
    """{student: notebook} for the six students described above, built on the released notebook."""
    spec = load_assignment(assignment)
    released = read_notebook(spec.release_path)
    table = alternatives(assignment)
    first = {g: table[g][0] for g in alternative_units(assignment)}
    return {
        INDEPENDENT: replace_sources(released, first),
        SOURCE: replace_sources(released, {g: table[g][1] for g in first}),
        COPIER: replace_sources(released, {g: disguise(code) for g, code in first.items()}),
        "dave": replace_sources(released, {u.grade_id: disguise(u.source) for u in spec.auto_units}),
        **{student: released for student in UNTOUCHED},
    }


def class_sources(assignment: str) -> list[similarity.Source]:
    grade_ids = [u.grade_id for u in load_assignment(assignment).auto_units]
    return [
        similarity.Source(student, similarity.STUDENT, similarity.graded_code(notebook, grade_ids))
        for student, notebook in class_notebooks(assignment).items()
    ]


def flagged_units(report: similarity.SimilarityReport, a: str, b: str) -> set[str]:
    return {p.unit for p in report.flagged if {p.name_a, p.name_b} == {a, b}}


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def class_report(request) -> similarity.SimilarityReport:
    spec = load_assignment(request.param)
    return similarity.analyse(spec, class_sources(request.param), similarity.corpus_sources(spec, Path("/nonexistent")))


def test_the_disguise_changes_names_comments_and_spacing():
    """Is the copier's code really disguised (other names, comments and spacing, same tokens otherwise)?"""
    original = "def f(x):\n    total = x + 1  # add one\n    return total\n"
    changed = disguise(original)
    assert "total" not in changed.replace("my_total_2", "") and "my_x_2" in changed
    assert "# my own idea" in changed and "add one" not in changed
    assert changed != original.replace("total", "my_total_2").replace("x", "my_x_2")


def test_a_disguised_copy_is_flagged_in_every_unit(class_report):
    """Is carol (alice's code with names, comments and spacing changed) flagged with alice in every unit and overall?"""
    assert flagged_units(class_report, INDEPENDENT, COPIER) == {
        *alternative_units(class_report.assignment),
        similarity.WHOLE,
    }


def test_independent_implementations_are_not_flagged(class_report):
    """Are alice and bob (the two independent alternatives) never flagged against each other, nor carol and bob?"""
    assert flagged_units(class_report, INDEPENDENT, SOURCE) == set()
    assert flagged_units(class_report, COPIER, SOURCE) == set()
    whole = [p for p in class_report.pairs if p.unit == similarity.WHOLE and {p.name_a, p.name_b} == {"alice", "bob"}]
    assert all(p.score <= class_report.unit_threshold(similarity.WHOLE) for p in whole)


def test_untouched_stubs_share_nothing(class_report):
    """Do two untouched notebooks share no code with anyone, the stubs being boilerplate?"""
    assert [p for p in class_report.pairs if {p.name_a, p.name_b} & set(UNTOUCHED)] == []


def test_without_the_boilerplate_the_stubs_would_match():
    """Would the two untouched notebooks be flagged if the stubs were not excluded (the exclusion matters)?"""
    spec = load_assignment(ASSIGNMENTS[0])
    report = similarity.analyse(spec, class_sources(spec.name), [], exclude_boilerplate=False)
    assert similarity.WHOLE in flagged_units(report, *UNTOUCHED)


def test_a_copy_of_the_solution_matches_the_corpus_solution(class_report):
    """Is dave (the kit's solution, disguised) flagged against corpus:solution in every unit and overall?"""
    assert flagged_units(class_report, "dave", similarity.SOLUTION_NAME) == set(class_report.units)
    assert {p.kind_b for p in class_report.pairs if p.name_b == similarity.SOLUTION_NAME} == {similarity.CORPUS}


def test_the_solution_is_read_from_solutions_not_stored_in_a_file():
    """Does the corpus hold the solution's graded cells from solutions/, and no corpus folder a copy of them?"""
    for name in ASSIGNMENTS:
        spec = load_assignment(name)
        (solution, *files) = similarity.corpus_sources(spec)
        assert solution.name == similarity.SOLUTION_NAME
        assert solution.cells == {u.grade_id: u.source for u in spec.auto_units}
        for entry in files:
            assert "BEGIN SOLUTION" not in entry.text, f"{entry.origin} holds the kit's solution"


def test_the_corpus_folder_never_reaches_students():
    """Does the student bundle hold nothing of assignments/ (where the corpus lives), and would the guard refuse it?"""
    files = release.bundle_files(ASSIGNMENTS)
    assert not [path for path in files if path.startswith("assignments/") or "similarity_corpus" in path]
    corpus_file = f"assignments/{ASSIGNMENTS[0]}/{similarity.CORPUS_DIR_NAME}/public.py"
    assert release.guard({corpus_file: b"x = 1\n"}) == [f"{corpus_file}: instructor-only folder"]


def test_highlighted_lines_mark_exactly_the_matching_code():
    """Does the side-by-side view mark the matching characters and only the lines that hold them?"""
    code = "a = 1\nb = <2>\n\nc = 3"
    start = code.index("b")
    lines = similarity.highlighted_lines(code, np.array([[start], [start + 7]]))
    assert lines == [(False, "a = 1"), (True, "<mark>b = &lt;2&gt;</mark>"), (False, ""), (False, "c = 3")]


SHARED = "def helper(values):\n    total = 0\n    for value in values:\n        total += value * value  # sum\n    return total"
OWN = "import math\n\n\ndef own(x):\n    return math.sqrt(x) + 1\n\n\n"


def test_highlights_fall_exactly_on_the_shared_code():
    """Does the marked text of each side start and end exactly at the shared code, whatever the leading
    blank lines and line ends (pygments drops the one and converts the other before copydetect maps back)?"""
    fingerprints = similarity.Fingerprinter([])
    code_a = similarity.normalise_code("\n\n" + OWN + SHARED + "\n")
    code_b = similarity.normalise_code(("\n" + SHARED + "\n\nprint(helper([1, 2]))\n").replace("\n", "\r\n"))
    pair = fingerprints.compare(code_a, code_b)
    for code, slices in ((code_a, pair.slices_a), (code_b, pair.slices_b)):
        marked = np.flatnonzero(similarity._match_mask(code, slices))
        assert code[marked[0] : marked[-1] + 1].rstrip() == SHARED  # (the mark may run on over blank space)


def test_class_names_map_back_to_their_place():
    """Does every class name of the normalised code map back to where that name starts in the original
    (copydetect 0.5.0 records the name's length there instead of the running offset)?"""
    from copydetect.utils import filter_code

    code = "import torch\n\n\nclass First(Base):\n    x = 1\n\n\nclass SecondOne:\n    y = [First, 2]\n"
    filtered, offsets = filter_code(code, "cell.py", "python")
    repaired = similarity.repair_class_offsets(filtered, offsets)
    positions = [i for i, char in enumerate(filtered) if char == "O"]
    starts = [i + repaired[:, 1][np.searchsorted(repaired[:, 0], i)] for i in positions]
    assert [code[start : start + 6] for start in starts] == ["First(", "Second"]


def test_the_command_writes_a_ranked_report_and_csv(tmp_path):
    """Does `segkit similarity` on an nbgrader folder write report.html and pairs.csv, ranked, naming corpus entries?"""
    name = ASSIGNMENTS[0]
    for student, notebook in class_notebooks(name).items():
        path = tmp_path / "submitted" / student / name / f"{name}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_text(notebook_text(notebook), encoding="utf-8")
    corpus = tmp_path / "corpus" / "github"
    corpus.mkdir(parents=True)
    unit = load_assignment(name).auto_units[-1].grade_id
    (corpus / "public_impl.py").write_text(disguise(alternatives(name)[unit][1]), encoding="utf-8")
    out = tmp_path / "similarity"
    argv = [str(tmp_path / "submitted"), "--assignment", name, "--out", str(out), "--corpus", str(corpus.parent)]
    assert similarity.main(argv) == 0

    with (out / name / "pairs.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(similarity.CSV_COLUMNS)
    p_values = [float(row["p_value"]) for row in rows]
    assert p_values == sorted(p_values) and [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))
    flagged = {(row["student_a"], row["student_b"], row["unit"]) for row in rows if row["flagged"] == "1"}
    assert (INDEPENDENT, COPIER, similarity.WHOLE) in flagged
    assert (SOURCE, "corpus:github/public_impl", unit) in flagged  # bob's code, found in the extra corpus file
    assert not {(a, b) for a, b, _ in flagged} & {(INDEPENDENT, SOURCE), (SOURCE, COPIER)}
    kinds = {row["student_b"]: row["b_kind"] for row in rows}
    assert (
        kinds["corpus:github/public_impl"] == kinds[similarity.SOLUTION_NAME] == "corpus" and kinds[COPIER] == "student"
    )

    page = (out / name / "report.html").read_text(encoding="utf-8")
    assert page.count('<div class="pair"') == len(flagged)
    assert "corpus:github/public_impl" in page and 'class="badge corpus"' in page and "<mark>" in page
    assert page.index(f"{INDEPENDENT} <span") < page.index('id="pair-1"')  # the ranked table comes before the code


# --- calibration (issue 29: a similarity report that flags copying, not the spec) ---------

# An independently written unet_wce, the obvious way from the docstring (written for this test; not in
# the corpus nor in similarity_corpus/independent/): the complaint, flagged by a fixed 0.6.
HONEST_WCE = '''def weighted_cross_entropy(logits, target, weight, ignore_index=IGNORE_INDEX):
    """Class-weighted cross-entropy, averaged by the sum of the weights."""
    log_probs = torch.log_softmax(logits, dim=1)
    keep = target != ignore_index
    tgt = torch.where(keep, target, torch.zeros_like(target))
    picked = log_probs.gather(1, tgt.unsqueeze(1)).squeeze(1)
    w = weight[tgt] * keep
    return -(w * picked).sum() / w.sum()
'''


def test_an_honest_obvious_implementation_is_flagged_by_a_fixed_threshold_but_not_calibrated():
    """Is the issue's complaint reproduced (an independent 6-line unet_wce flagged against the solution at
    the old fixed 0.6) and gone with the calibrated threshold, while a renamed copy of it is still flagged?"""
    spec = load_assignment("unet")
    table = alternatives("unet")
    cells = {gid: codes[0] for gid, codes in table.items()}
    honest = similarity.Source("honest", similarity.STUDENT, {**cells, "unet_wce": HONEST_WCE})
    copier = similarity.Source("copier", similarity.STUDENT, {"unet_wce": disguise(HONEST_WCE)})
    fixed = similarity.analyse(spec, [honest], threshold=0.6)
    assert "unet_wce" in flagged_units(fixed, "honest", similarity.SOLUTION_NAME)
    calibrated = similarity.analyse(spec, [honest, copier])
    assert "unet_wce" not in flagged_units(calibrated, "honest", similarity.SOLUTION_NAME)
    assert "unet_wce" in flagged_units(calibrated, "copier", "honest")
    ranked = [(p.name_a, p.name_b) for p in calibrated.pairs if p.unit == "unet_wce"]
    assert ranked.index(("copier", "honest")) < ranked.index(("honest", similarity.SOLUTION_NAME))


def test_at_most_the_allowed_share_of_independent_pairs_is_flagged(class_report):
    """Does each unit's default threshold flag at most 5 % of its independent pairs, and stay below what a
    renamed copy scores (so copies can be flagged)?"""
    for unit, null in class_report.calibration.units.items():
        scores = null.effective(class_report.min_overlap)
        threshold = class_report.unit_threshold(unit)
        assert len(scores) >= 20, unit
        assert np.mean(scores > threshold + similarity.ROUNDING) <= 0.05, unit
        assert threshold < 0.95, unit


def test_the_null_holds_enough_generated_variants_and_no_copies():
    """Are there at least 20 generated variants per unit, do they parse and differ from their source, and
    are two variants of the same implementation never counted as an independent pair?"""
    spec = load_assignment("unet")
    families = similarity.unit_families(spec)
    variants = similarity.variant_families("unet", "unet_wce", families["unet_wce"], similarity.VARIANTS_PER_UNIT)
    generated = [text for family in variants for text in family[1:]]
    assert len(generated) >= 20
    for text in generated:
        ast.parse(text)
    assert len(set(generated)) == len(generated)
    owner = [f for f, family in enumerate(variants) for _ in family]
    pairs = similarity.independent_pairs(variants)
    assert pairs and all(owner[i] != owner[j] for i, j in pairs)


def test_the_variants_restyle_the_code():
    """Does the variant generator reorder independent statements, swap loops and comprehensions, and
    rename local names, so that the null holds more than renamed copies?"""
    source = "def f(xs):\n    a = 1\n    b = 2\n    out = [x + a for x in xs]\n    return out, b\n"
    seen = {similarity.independent_variant(source, f"test/{i}") for i in range(30)}
    assert any(".append(" in v for v in seen)
    # (a variant may inline `a = 1` away: only those that keep both assignments can show the order)
    assert any(" = 1" in v and " = 2" in v and v.index(" = 2") < v.index(" = 1") for v in seen)
    assert any("out =" not in v for v in seen) and all("def f(xs):" in v for v in seen)


def test_the_coverage_matrix_matches_copydetect():
    """Is the all-pairs coverage exactly copydetect's token overlap, both ways, on the kit's own code?"""
    fingerprints = similarity.Fingerprinter([])
    table = alternatives("unet")
    texts = [similarity.normalise_code(t) for t in (*table["unet_wce"], HONEST_WCE, disguise(HONEST_WCE))]
    matrix = similarity.coverage_matrix([fingerprints.prints(t) for t in texts], fingerprints.noise)
    for i, a in enumerate(texts):
        for j, b in enumerate(texts):
            if i != j:
                match = fingerprints.compare(a, b)
                assert matrix[i, j] == (match.tokens_overlap if match else 0), (i, j)


def test_the_calibration_is_cached_and_recomputed_when_an_input_changes(tmp_path, monkeypatch):
    """Is the null read back from build/ on the second run, and computed again under another key when an
    independent implementation is added?"""
    monkeypatch.setattr(similarity, "VARIANTS_PER_UNIT", 3)  # (a small null: this test is about the cache)
    monkeypatch.setattr(similarity, "WHOLE_NULL_PAIRS", 4)
    spec = load_assignment("cam")
    boilerplate = similarity.boilerplate_texts(spec)
    fingerprints = similarity.Fingerprinter(boilerplate.values())
    first = similarity.load_or_compute_calibration(spec, boilerplate, fingerprints, tmp_path)
    again = similarity.load_or_compute_calibration(spec, boilerplate, fingerprints, tmp_path)
    assert again.source == first.source and Path(first.source).is_file()
    assert {u: n.pairs for u, n in again.units.items()} == {u: n.pairs for u, n in first.units.items()}
    monkeypatch.setattr(similarity, "independent_texts", lambda spec: [alternatives("cam")["cam_top1"][0]])
    changed = similarity.calibration_key(spec, boilerplate, fingerprints.noise)
    assert changed not in first.source


def test_tokenizing_in_worker_processes_gives_the_same_fingerprints(monkeypatch):
    """Are the fingerprints, shares and highlighted ranges the same when cells are tokenized in a pool
    of processes (as for a large class) as when tokenized in this process?"""
    monkeypatch.setattr(similarity, "PARALLEL_MIN_TEXTS", 1)
    texts = [
        similarity.normalise_code(t) for t in (*alternatives("unet")["unet_wce"], HONEST_WCE, disguise(HONEST_WCE))
    ]
    direct, pooled = similarity.Fingerprinter([]), similarity.Fingerprinter([])
    pooled.prefetch(texts, jobs=2)
    assert len(pooled._filtered) == len(texts)
    for text in texts:
        a, b = direct.prints(text), pooled.prints(text)
        assert (a.positions.tolist(), a.hashes.tolist(), a.tokens) == (
            b.positions.tolist(),
            b.hashes.tolist(),
            b.tokens,
        )
    first, second = direct.compare(texts[2], texts[3]), pooled.compare(texts[2], texts[3])
    assert first.slices_a.tolist() == second.slices_a.tolist() and first.similarity_a == second.similarity_a
