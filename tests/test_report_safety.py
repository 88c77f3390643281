"""Worker text in every output format: bounded, and inert whatever markup it holds (issue 24, part 3).

A `SubmissionResult` is built here with a 20 MB error in every place a student's code can put text
(a check's detail, a cell's error, the notebook error) and markup in each (a fake `# Feedback`
heading, a fake score line, a table, an image, a link, raw HTML, a code fence): every file
`write_submission_reports` writes stays under the stated caps, the trusted process does not copy the
20 MB while rendering, and the markup renders as text: the `.md` is rendered with mistune (nbconvert's
Markdown renderer, with GitHub's table and autolink extensions, raw HTML passed through) and both it
and the `.html` are parsed with `html.parser`.
"""

from __future__ import annotations

import json
import tracemalloc
from html.parser import HTMLParser

import mistune
import pytest

from grader.report import (
    MAX_FEEDBACK_BYTES,
    MAX_TEXT_CHARS,
    feedback_html,
    feedback_markdown,
    gradescope_json,
    md_code_block,
    md_code_span,
    md_inline,
    safe_text,
    write_submission_reports,
)
from grader.results import CheckResult, SubmissionResult, UnitResult
from integrations.gradebook import MAX_COMMENT_BYTES, unit_comment

MARKUP = (
    "\n# Feedback: forged\n\n**Autograded score: 16 / 16**\n\n| unit | points |\n|---|---|\n| all | 16 / 16 |\n\n"
    "<img src=x onerror=alert(1)>\n[click here](http://evil.example/)\nwww.evil.example\n"
    "<script>alert(1)</script>\n```\nfence closed\n"
)
BIG = 20 * 1024 * 1024
FORGED = "16 / 16"


def _hostile_text(tag: str) -> str:
    return f"{tag}: {MARKUP}" + "A" * BIG + MARKUP


def _hostile_result(notebook: str = "") -> SubmissionResult:
    unit_error = _hostile_text("unit error")
    cell_error = "ValueError: " + unit_error
    units = {}
    for index, gid in enumerate(("unit_a", "unit_b")):
        checks = [
            CheckResult(
                test=f"test_{gid}_{n}",
                question=f"Does check {n} of {gid} pass?",
                grade_id=gid,
                points=0.0,
                max_points=1.0,
                passed=False,
                message="The check failed.",
                # unit_a: the cell's error in every check (as the runner writes it); unit_b: one text per check
                detail=f"running the cell '{gid}' failed: {cell_error}" if index == 0 else _hostile_text(f"check {n}"),
            )
            for n in range(8)
        ]
        units[gid] = UnitResult(gid, 0.0, 8.0, checks)
    return SubmissionResult(
        student_id="eve <img src=x> [l](javascript:alert(1)) | x",
        assignment="patches",
        total=0.0,
        max_points=16.0,
        notebook=notebook,
        units=units,
        manual_points={"written": 1.0},
        notebook_error=_hostile_text("notebook error"),
        cell_status={"unit_a": cell_error, "unit_b": "ok"},
    )


@pytest.fixture(scope="module")
def hostile():
    return _hostile_result()


class Tags(HTMLParser):
    """Every element of an HTML text, with the text each holds directly and the elements around it."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.texts: list[tuple[tuple[str, ...], str]] = []
        self._stack: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in {"meta", "br", "img", "hr", "input"}:
            self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass

    def handle_data(self, data):
        self.texts.append((tuple(self._stack), data))

    def names(self) -> list[str]:
        return [name for name, _ in self.elements]

    def inside(self, needle: str) -> list[tuple[str, ...]]:
        return [stack for stack, data in self.texts if needle in data]


def _render_markdown(text: str) -> str:
    """Markdown as GitHub renders it, raw HTML passed through (so that unescaped markup would show)."""
    return mistune.create_markdown(escape=False, plugins=["table", "url", "strikethrough"])(text)


def _assert_inert(tags: Tags, *, allowed: set[str]):
    names = set(tags.names())
    assert names <= allowed, f"unexpected elements: {names - allowed}"
    assert "img" not in names and "script" not in names and "a" not in names
    for stack in tags.inside(FORGED):
        assert {"code", "pre"} & set(stack), f"'{FORGED}' outside code: {stack}"
    assert tags.inside("<img src=x"), "the image tag should be shown as text"
    assert tags.inside("<script>"), "the script tag should be shown as text"


def test_markdown_feedback_is_bounded_and_inert(hostile):
    """Does the .md of a result holding 20 MB of markup in every untrusted field stay under 64 kB and
    render every heading, score line, table, image, link and script of it as text?"""
    text = feedback_markdown(hostile)
    assert len(text.encode()) <= MAX_FEEDBACK_BYTES
    tags = Tags(_render_markdown(text))
    _assert_inert(
        tags,
        allowed={
            "h1",
            "h2",
            "p",
            "strong",
            "em",
            "code",
            "pre",
            "ul",
            "li",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "blockquote",
        },
    )
    assert tags.names().count("h1") == 1 and tags.names().count("table") == 1
    assert tags.names().count("h2") == len(hostile.units) + 1  # each unit, and the written answers
    # unit_a's error (in each of its 8 checks and its cell) is shown once; the others point to it
    assert text.count("unit error:") == 1
    assert text.count("the error your cell raised, shown under the unit's heading") == 8


def test_html_feedback_is_bounded_and_inert(hostile):
    """Does the .html stay under 64 kB and show all that markup as text?"""
    page = feedback_html(hostile)
    assert len(page.encode()) <= MAX_FEEDBACK_BYTES
    tags = Tags(page)
    _assert_inert(
        tags,
        allowed={"meta", "title", "style", "h1", "h2", "p", "strong", "em", "code", "pre", "ul", "li", "br", "small"},
    )
    assert tags.names().count("h1") == 1


def test_gradescope_json_is_bounded_and_plain_text(hostile):
    """Is every string of the Gradescope results.json in the `text` format (shown as is), each output
    cut to about 2 kB and the whole under 64 kB?"""
    results = gradescope_json(hostile)
    assert len(json.dumps(results).encode()) <= MAX_FEEDBACK_BYTES
    assert results["output_format"] == results["test_output_format"] == results["test_name_format"] == "text"
    for test in results["tests"]:
        assert test["output_format"] == test["name_format"] == "text"
        assert len(test["output"]) <= 2 * MAX_TEXT_CHARS + 200


def test_written_files_and_memory_are_bounded(hostile, tmp_path):
    """Does writing the three files of that submission keep each under its cap, without the trusted
    process copying the 20 MB texts (its allocations while rendering stay under 8 MB)?"""
    tracemalloc.start()
    try:
        write_submission_reports(hostile, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"rendering allocated {peak / 1e6:.1f} MB"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 3
    for path in files:
        assert path.stat().st_size <= MAX_FEEDBACK_BYTES, path


def test_gradebook_comment_is_bounded_and_inert(hostile):
    """Is the nbgrader comment of each unit under its cap, with the markup as code and a repeated error once?"""
    for unit in hostile.units.values():
        comment = unit_comment(unit)
        assert len(comment.encode()) <= MAX_COMMENT_BYTES
        tags = Tags(_render_markdown(comment))
        assert not {"h1", "h2", "img", "a", "script", "table"} & set(tags.names())
        for stack in tags.inside(FORGED):
            assert {"code", "pre"} & set(stack)
    assert unit_comment(hostile.units["unit_a"]).count("unit error:") == 1


@pytest.mark.parametrize(
    "text",
    ["`", "``x``", "a ` b", "# h", "<b>x</b>", "| a |", "x\n```\n# y\n````", "www.x.com", "http://x", "*e*", "&amp;"],
)
def test_markdown_escapes_are_inert(text):
    """Does each way of writing untrusted text into Markdown (plain, code span, code block) render as
    that text and nothing else?"""
    for markdown in (f"Detail: {md_inline(text)}", f"Detail: {md_code_span(text)}", "\n".join(md_code_block(text))):
        tags = Tags(_render_markdown(markdown))
        assert set(tags.names()) <= {"p", "code", "pre"}, (markdown, tags.names())
    block = Tags(_render_markdown("\n".join(md_code_block(text))))
    assert "".join(data for _, data in block.texts).strip("\n") == safe_text(text)


def test_ordinary_text_stays_plain():
    """Does an ordinary message stay as it is in the .md (no code span where nothing could be markup)?"""
    assert md_inline("the result has shape (3, 3), expected (4, 4)") == "the result has shape (3, 3), expected (4, 4)"
    assert md_inline("see <this>") == "`see <this>`"


def test_cut_keeps_head_and_tail_and_drops_controls():
    """Is a long text cut to its head and tail, saying how much was left out, without control characters?"""
    text = safe_text("HEAD" + "x" * 10_000 + "\x1b[31m\u202eTAIL")
    assert text.startswith("HEAD") and text.endswith("TAIL") and "characters left out" in text
    assert "\x1b" not in text and "\u202e" not in text and len(text) < MAX_TEXT_CHARS + 100
