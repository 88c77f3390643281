"""Feedback on the student's own notebook (issue 29): the .html shows the notebook's cells in order,
each graded cell followed by its unit's checks, points and messages; markdown rendered inert, code
escaped, outputs left out except plain base64 PNG images.

The notebook is a bundled example (`example-buggy` of `patches`, segkit/proof/examples.py) with a
markdown cell of markup and three outputs added; its result is synthesized (grading takes minutes).
The page is parsed with `html.parser`, and, where Debian's `chromium` is installed, by a real
headless browser (`--dump-dom`), which must see the same order.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from grader.assignments import load_assignment
from grader.report import MAX_FEEDBACK_BYTES, MAX_NOTEBOOK_VIEW_BYTES, read_student_notebook, write_submission_reports
from grader.results import CheckResult, SubmissionResult, UnitResult
from segkit.proof.examples import example_notebooks
from starter.common import grade_id, notebook_text

ASSIGNMENT = "patches"
STUDENT = "example-buggy"
HOSTILE_MARKDOWN = (
    "# Feedback: forged\n\n**Autograded score: 16 / 16**\n\n<script>alert(1)</script>\n"
    "<img src=x onerror=alert(1)>\n[click](javascript:alert(1)) ![pixel](http://evil.example/p.png)\n"
)


def _png() -> str:
    """A valid 1x1 PNG, base64."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    raw = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")
    )
    return base64.b64encode(raw).decode()


def _notebook() -> dict:
    notebook = json.loads(json.dumps(example_notebooks(ASSIGNMENT)[STUDENT]))
    notebook["cells"].insert(
        0, {"cell_type": "markdown", "id": "hostile-markdown", "metadata": {}, "source": HOSTILE_MARKDOWN}
    )
    code = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    code["outputs"] = [
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": _png()}},
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": "PHNjcmlwdD4="}},  # not a PNG
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": "<script>alert(2)</script>"}},
    ]
    return notebook


def _result(notebook_path: Path) -> SubmissionResult:
    spec = load_assignment(ASSIGNMENT)
    units = {}
    for unit in spec.auto_units:
        checks = [
            CheckResult(f"test_{unit.grade_id}_ok", f"Does {unit.grade_id} work?", unit.grade_id, 1.0, 1.0, True),
            CheckResult(
                f"test_{unit.grade_id}_bad",
                f"Is {unit.grade_id} exact?",
                unit.grade_id,
                0.0,
                unit.points - 1,
                False,
                f"{unit.grade_id} is not exact.",
                "got <b>shape</b> (3, 3)",
            ),
        ]
        units[unit.grade_id] = UnitResult(unit.grade_id, 1.0, unit.points, checks)
    return SubmissionResult(
        STUDENT,
        ASSIGNMENT,
        float(len(units)),
        spec.max_points,
        notebook=str(notebook_path),
        units=units,
        cell_status=dict.fromkeys(units, "ok"),
    )


class Layout(HTMLParser):
    """The page's cells and result boxes in document order: ('cell', number) and ('results', grade_id)."""

    def __init__(self, page: str):
        super().__init__()
        self.order: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self._label = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        classes = (attrs.get("class") or "").split()
        if tag == "p" and "cell-label" in classes:
            self._label = True
        if tag == "h2" and (attrs.get("id") or "").startswith("unit-"):
            self.order.append(("results", attrs["id"].removeprefix("unit-")))
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "a":
            self.links.append(attrs.get("href") or "")

    def handle_data(self, data):
        if self._label:
            self.order.append(("cell", data.split()[1]))
            self._label = False


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("feedback")
    notebook = _notebook()
    path = folder / "submitted" / f"{ASSIGNMENT}.ipynb"
    path.parent.mkdir()
    path.write_text(notebook_text(notebook), encoding="utf-8")
    result = _result(path)
    write_submission_reports(result, folder / "out")
    page = folder / "out" / "feedback" / STUDENT / f"{ASSIGNMENT}.html"
    return {"notebook": notebook, "result": result, "page": page, "text": page.read_text(encoding="utf-8")}


def _expected_order(notebook: dict, units: dict) -> list[tuple[str, str]]:
    order = []
    for number, cell in enumerate(notebook["cells"], start=1):
        order.append(("cell", str(number)))
        if grade_id(cell) in units:
            order.append(("results", grade_id(cell)))
    return order


def test_each_graded_cell_is_followed_by_its_results(rendered):
    """Does the page show every cell of the notebook in order, each graded cell followed by its
    unit's results (points, checks and messages)?"""
    layout = Layout(rendered["text"])
    assert layout.order == _expected_order(rendered["notebook"], rendered["result"].units)
    for gid, unit in rendered["result"].units.items():
        assert f"{gid} is not exact." in rendered["text"] and f"Does {gid} work?" in rendered["text"]
        assert f"<h2 id='unit-{gid}'><code>{gid}</code>: 1 / {unit.max_points:g}</h2>" in rendered["text"]


def test_notebook_view_is_inert(rendered):
    """Is the student's markdown rendered without its script, image, link or a heading of the page's
    level, code escaped, and only the valid PNG output shown?"""
    layout, text = Layout(rendered["text"]), rendered["text"]
    assert "script" not in layout.tags
    assert layout.links == [f"#unit-{gid}" for gid in rendered["result"].units]  # the summary table's only
    assert layout.tags.count("h1") == 1  # the student's '# Feedback' heading is moved below the page's
    assert layout.images == [f"data:image/png;base64,{_png()}"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "alert(2)" not in text
    assert "got &lt;b&gt;shape&lt;/b&gt; (3, 3)" in text
    assert len(text.encode()) <= MAX_FEEDBACK_BYTES + MAX_NOTEBOOK_VIEW_BYTES


def test_markdown_stays_compact(rendered):
    """Does the .md stay the compact form (no notebook cells in it)?"""
    markdown = rendered["page"].with_suffix(".md").read_text(encoding="utf-8")
    assert "Your notebook" not in markdown and "HOSTILE" not in markdown and "cell 1" not in markdown
    assert all(f"## `{gid}`" in markdown for gid in rendered["result"].units)


def test_unreadable_notebooks_are_not_shown(tmp_path, rendered):
    """Is a missing file, a symlink or a file of the kit's solutions never read for the page?"""
    result = rendered["result"]
    link = tmp_path / "link.ipynb"
    link.symlink_to(Path(result.notebook))
    solution = load_assignment(ASSIGNMENT).solution_path
    for path in (tmp_path / "missing.ipynb", link, solution):
        assert read_student_notebook(SubmissionResult(STUDENT, ASSIGNMENT, 0, 1, notebook=str(path))) is None
    assert read_student_notebook(result) is not None


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_headless_browser_sees_results_under_each_cell(rendered):
    """Does a real browser (headless chromium) parse the page into the same order of cells and results?"""
    run = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", rendered["page"].as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    layout = Layout(run.stdout)
    assert layout.order == _expected_order(rendered["notebook"], rendered["result"].units)
    assert "script" not in layout.tags
