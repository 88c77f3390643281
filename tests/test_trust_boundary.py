"""The trust boundary under attack (segkit/proof/hostile.py `build_boundary_corpus`), graded in ONE slot so
that workers follow each other, as root and as an ordinary uid, each by a fresh copy of the kit:

- exfiltration: for each dependent unit of every assignment, a cell that sends whatever reference code
  its dependency run holds out on every channel (exception text, printed output, files, the worker's
  own error shortener replaced); no line of a reference cell may appear in any file of the run;
- laundering: one submission stashes the reference helpers its dependency run holds, the next runs the
  stash as its own helpers, and earns what a stub earns;
- persistence: a worker writes a marker into every writable folder, replaces every link it can, parks
  memory in every tmpfs; the next worker of the slot finds none of it;
- size and markup: a 20 MB error and 20 MB of output give bounded files; forged markup stays text.
"""

from __future__ import annotations

import ast
import concurrent.futures
import html.parser
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mistune
import pytest
from sandbox_helpers import TEST_UID, as_user_command, copy_kit, without_user_namespaces

from grader.assignments import load_assignment, read_notebook
from grader.sandbox import host_sandbox
from segkit.proof.hostile import FORGED_MARKUP, attacked_and_helpers, build_boundary_corpus, corpus_assignment
from starter.common import cell_source, cells_by_grade_id, write_notebook

pytestmark = [pytest.mark.slow]
RUN_OPTIONS = ["-j", "1", "--cell-timeout", "60", "--probe-timeout-cap", "60", "--memory-mb", "3072"]
# make test attacks the dependent units of one assignment (the engine treats every assignment alike,
# and each assignment's reference costs a grading process its start-up); make proof attacks them all.
CORPUS = build_boundary_corpus(exfiltrate=[corpus_assignment()])
FILE_CAP_BYTES = 512 * 1024  # any one output file of one submission
# bubblewrap as root and as an ordinary uid; the Landlock layer (user namespaces disabled) as both too.
WHO = ["root", "user", "landlock-root", "landlock-user"]


def _reference_lines(submission) -> set[str]:
    """Lines (20 characters or more) of the reference cells of the helpers this submission does not hold."""
    spec = load_assignment(submission.assignment)
    solution = read_notebook(spec.solution_path)
    _, helpers = attacked_and_helpers(submission.assignment)
    submitted = "\n".join(cell_source(c) for c in submission.notebook["cells"])
    lines = set()
    for gid in helpers:
        for line in cell_source(cells_by_grade_id(solution)[gid][0]).splitlines():
            line = line.strip()
            if len(line) >= 20 and line not in submitted:
                lines.add(line)
    return lines


def _one_run(who: str, corpus=CORPUS) -> dict:
    user, landlock = who.endswith("user"), who.startswith("landlock")
    base = Path(tempfile.mkdtemp(prefix=f"segkit-boundary-{who}-"))
    os.chmod(base, 0o755)
    try:
        kit, out, submitted = base / "kit", base / "grades", base / "submitted"
        copy_kit(kit)
        for submission in corpus:
            write_notebook(
                submitted / submission.student / submission.assignment / f"{submission.assignment}.ipynb",
                submission.notebook,
            )
        units_map = base / "units-map.json"
        units_map.write_text(json.dumps({s.student: list(s.units) for s in corpus}))
        if user:
            subprocess.run(["chown", "-R", f"{TEST_UID}:{TEST_UID}", str(base)], check=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "PYTHONPATH": str(kit), "LANG": "C.UTF-8"}
        argv = [
            sys.executable,
            "-m",
            "grader",
            str(submitted),
            "--out",
            str(out),
            *RUN_OPTIONS,
            "--units-map",
            str(units_map),
        ]
        stage = None
        if landlock:  # as root the runtime (under /root) is staged where the spare uid reaches it
            env["SEGKIT_SANDBOX_LAYER"] = "landlock"
            argv, stage = as_user_command(argv, uid=TEST_UID if user else 0, env=env)
            argv = without_user_namespaces(argv)
        elif user:
            argv, stage = as_user_command(argv, env=env)
        try:
            run = subprocess.run(argv, cwd=kit, env=env, capture_output=True, text=True, timeout=1500)
        finally:
            if stage:
                shutil.rmtree(stage, ignore_errors=True)
        files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        results = {}
        for path in (out / "results").glob("*/*.json"):
            result = json.loads(path.read_text())
            results[result["student_id"]] = (result, path.stat().st_mtime)
        return {"run": run, "files": files, "results": results}
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def boundary_runs():
    if os.geteuid() != 0:
        pytest.skip("borrowing an ordinary uid needs root (CI runs as root)")
    if not host_sandbox().ok:
        pytest.fail(f"this host cannot build the grading sandbox: {host_sandbox().reason}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(WHO)) as pool:
        return dict(zip(WHO, pool.map(_one_run, WHO)))


def _student_files(run: dict, student: str) -> dict[str, bytes]:
    return {name: data for name, data in run["files"].items() if student in Path(name).parts or student in name}


def _visible_to(run: dict, student: str) -> list[tuple[str, bytes]]:
    """The student's own files, the run's files about everyone, and the terminal output. (Other students'
    feedback shows their own notebooks, which in this corpus are copies of the solution.)"""
    others = {s.student for s in CORPUS} - {student}
    files = [
        (name, data)
        for name, data in run["files"].items()
        if not any(other in Path(name).parts or Path(name).stem == other for other in others)
    ]
    return [*files, ("stdout", run["run"].stdout.encode()), ("stderr", run["run"].stderr.encode())]


class _Elements(html.parser.HTMLParser):
    """The tags and attributes of an HTML document, as a browser would build them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[str] = []  # the text of every table cell
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self.tags and self.tags[-1][0] in ("td", "th"):
            self.cells.append(data.strip())


def _is_png(attrs: dict) -> bool:
    """An image the page may show: an embedded PNG that decodes as one (the forged one is HTML)."""
    import base64

    source = attrs.get("src") or ""
    prefix = "data:image/png;base64,"
    return source.startswith(prefix) and base64.b64decode(source[len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"


def _active_markup(document: str, *, tables: bool = True) -> list[str]:
    """What of the forged markup became markup: images, scripts, links to the forger, tables, extra headings."""
    elements = _Elements(document)
    tags = elements.tags
    found = [tag for tag, attrs in tags if tag in ("script", "iframe", "object", "embed")]
    found += [f"img {attrs.get('src', '')[:40]}" for tag, attrs in tags if tag == "img" and not _is_png(attrs)]
    found += [f"{tag} {name}" for tag, attrs in tags for name in attrs if name.startswith("on")]
    if tables:  # the HTML page renders the student's own markdown cells, tables included, as their notebook
        found += [f"table cell {cell}" for cell in elements.cells if cell in ("all", "999")]
    found += [f"a {attrs['href']}" for tag, attrs in tags if tag == "a" and "evil" in attrs.get("href", "")]
    found += [f"{tag} heading" for tag, _ in tags if tag == "h1"][1:]
    return found


@pytest.mark.parametrize("who", WHO)
def test_every_submission_is_graded_in_one_slot(boundary_runs, who):
    """Does the run finish with a result for every submission of the corpus?"""
    run = boundary_runs[who]
    assert run["run"].returncode == 0, run["run"].stderr[-3000:]
    assert set(run["results"]) == {s.student for s in CORPUS}


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("submission", [s for s in CORPUS if s.student.startswith("b1-")], ids=lambda s: s.student)
def test_no_reference_line_reaches_any_output(boundary_runs, who, submission):
    """Do the dependency runs happen, and does none of the reference helpers' lines reach a file of the run
    (feedback, report, Gradescope JSON, results, logs) or its terminal output?"""
    run = boundary_runs[who]
    lines = _reference_lines(submission)
    assert lines, "the helpers' reference cells have lines the submission does not hold"
    log = run["files"][f"logs/{submission.assignment}/{submission.student}.log"].decode()
    for unit in submission.units:
        assert f"dependency run of {unit}:" in log
    everything = _visible_to(run, submission.student)
    leaks = [(name, line) for name, data in everything for line in lines if line.encode() in data]
    assert leaks == []
    # What the attack's loot looks like (the file name of reference code, its marker), not its source.
    assert [name for name, data in everything if b"<cell reference" in data or b"LOOT " in data] == []


@pytest.mark.parametrize("who", WHO)
def test_no_hidden_check_line_reaches_any_output(boundary_runs, who):
    """Do the hidden checks' own lines (their code, inputs and the expected values their tracebacks would show)
    stay out of every file of the run, the logs included?"""
    run = boundary_runs[who]
    source = load_assignment(corpus_assignment()).checks_path.read_text()
    # Strings are what checks show students on purpose (questions, messages): only code lines count.
    text_lines = {
        number
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Constant, ast.JoinedStr)) and isinstance(getattr(node, "value", ""), (str, list))
        for number in range(node.lineno, node.end_lineno + 1)
    }
    lines = {
        line.strip()
        for number, line in enumerate(source.splitlines(), start=1)
        if number not in text_lines and len(line.strip()) >= 30 and not line.strip().startswith(("#", "@", "def "))
    }
    assert len(lines) > 50
    leaks = [(name, line) for name, data in run["files"].items() for line in lines if line.encode() in data]
    assert leaks == []


@pytest.mark.proof
def test_no_reference_line_of_any_assignment_reaches_any_output():
    """Does no line of any assignment's reference helpers reach any output, graded as root and as an
    ordinary uid, when every dependent unit of every assignment tries to send it out?"""
    corpus = [s for s in build_boundary_corpus() if s.student.startswith("b1-")]
    for who in WHO:
        run = _one_run(who, corpus)
        assert run["run"].returncode == 0, run["run"].stderr[-3000:]
        everything = [
            *run["files"].items(),
            ("stdout", run["run"].stdout.encode()),
            ("stderr", run["run"].stderr.encode()),
        ]
        for submission in corpus:
            lines = _reference_lines(submission)
            assert [(name, line) for name, data in everything for line in lines if line.encode() in data] == []
        assert [name for name, data in everything if b"<cell reference" in data or b"LOOT " in data] == []


@pytest.mark.parametrize("who", WHO)
def test_a_stash_of_reference_code_does_not_reach_the_next_student(boundary_runs, who):
    """Does a submission whose helpers only run what an earlier one stashed earn what a stub earns?"""
    results = boundary_runs[who]["results"]
    (_, stashed_at), (reader, read_at) = results["b2-launder-stash"], results["b3-launder-read"]
    assert stashed_at <= read_at  # graded after the stash, in the same slot
    for unit in ("patch_extract", "patch_stitch"):
        assert reader["units"][unit]["points"] == 0


@pytest.mark.parametrize("who", WHO)
def test_nothing_a_worker_leaves_reaches_the_next_worker(boundary_runs, who):
    """Does the worker after one that marked every writable folder, relinked what it could and parked memory
    in every tmpfs find none of it (its cell asserts so, and keeps its points)?"""
    results = boundary_runs[who]["results"]
    look, _ = results["b5-persist-look"]
    target = look["units"]["patch_weights"]
    assert target["points"] == target["max_points"], [t["detail"] for t in target["tests"] if not t["passed"]]


@pytest.mark.parametrize("who", WHO)
def test_a_flood_gives_bounded_files(boundary_runs, who):
    """Do a 20 MB error text and 20 MB of printed output give output files under the cap?"""
    files = _student_files(boundary_runs[who], "b6-flood")
    assert files
    assert {name: len(data) for name, data in files.items() if len(data) > FILE_CAP_BYTES} == {}


@pytest.mark.parametrize("who", WHO)
def test_forged_markup_renders_as_text(boundary_runs, who):
    """Does a heading, score line, table, image, link and script in an error text, in a markdown cell and in a
    cell's outputs stay inert text in the Markdown and HTML feedback (which shows the notebook) and the Gradescope
    JSON?"""
    files = _student_files(boundary_runs[who], "b7-markup")
    markdown = files["feedback/b7-markup/patches.md"].decode()
    html_page = files["feedback/b7-markup/patches.html"].decode()
    gradescope = json.loads(files["gradescope/patches/b7-markup/results.json"])
    assert "Autograded score: 999" in markdown and "Autograded score: 999" in html_page  # there, as text
    assert _active_markup(mistune.html(markdown)) == []
    assert _active_markup(html_page, tables=False) == []
    for test in gradescope["tests"]:
        assert test.get("output_format", gradescope.get("test_output_format")) == "text"
    assert FORGED_MARKUP.splitlines()[3] in json.dumps(gradescope)  # the forged score line, shown as plain text
