"""grader.results: the typed submission result, its JSON form, and the reports made from it.

The expected texts below were produced by grader/report.py as it was before results were typed
(when it read the same record as a dict), so they pin "the same feedback as before".
"""

from __future__ import annotations

import copy
import json

import pytest

from grader.report import feedback_html, feedback_markdown, gradescope_json, summary_table, write_gradebook
from grader.results import CheckResult, ResultFormatError, SubmissionResult, UnitResult
from grader.sandbox import PROTECTION_TEXT

# A results file as grader/run/store.py writes it (<out>/results/<assignment>/<student>.json), as a dict.
STORED = {
    "student_id": "alice",
    "assignment": "patches",
    "notebook": "/course/submitted/alice/patches/patches.ipynb",
    "unit_order": ["patch_weights", "patch_merge"],
    "units": {
        "patch_weights": {
            "points": 1.0,
            "max_points": 2.0,
            "tests": [
                {
                    "test": "test_weights_sum",
                    "question": "Do the weights sum to one?",
                    "grade_id": "patch_weights",
                    "points": 1.0,
                    "max_points": 1.0,
                    "passed": True,
                    "message": "",
                    "detail": "",
                    "seconds": 0.12,
                },
                {
                    "test": "test_weights_shape",
                    "question": "Is the weight map <H, W>?",
                    "grade_id": "patch_weights",
                    "points": 0.0,
                    "max_points": 1.0,
                    "passed": False,
                    "message": "The weight map has the wrong shape.",
                    "detail": "the result has shape (3, 3), expected (4, 4)",
                    "seconds": 0.3,
                },
            ],
        },
        "patch_merge": {
            "points": 0.0,
            "max_points": 1.5,
            "tests": [
                {
                    "test": "test_merge",
                    "question": "Does merging patches & averaging overlaps work?",
                    "grade_id": "patch_merge",
                    "points": 0.0,
                    "max_points": 1.5,
                    "passed": False,
                    "message": "Merged patches differ.",
                    "detail": "",
                    "seconds": 1.05,
                },
            ],
        },
    },
    "manual": {"patch_written": 2.0},
    "notebook_error": "",
    "cells": {"patch_weights": "ok", "patch_merge": "ok"},
    "protections": list(PROTECTION_TEXT),
    "worker_restarts": 1,
    "total": 1.0,
    "max": 3.5,
    "unsafe_no_sandbox": False,
    "peak_worker_memory_mb": 812.4,
    "duration_s": 7.31,
    "cpu_s": 15.2,
    "fingerprint": "0123456789abcdef01234567",
}

# An unreadable notebook graded without the sandbox: an unchecked unit scores the int 0 (round(sum([]), 4)).
BROKEN = {
    "student_id": "bob",
    "assignment": "patches",
    "notebook": "bob.ipynb",
    "unit_order": ["patch_weights"],
    "units": {"patch_weights": {"points": 0, "max_points": 2.0, "tests": []}},
    "manual": {},
    "notebook_error": "not valid notebook JSON (line 1)",
    "cells": {},
    "protections": [],
    "worker_restarts": 0,
    "checked_units": ["patch_weights"],
    "total": 0,
    "max": 2.0,
    "unsafe_no_sandbox": True,
    "peak_worker_memory_mb": 0.0,
    "duration_s": 0.5,
    "cpu_s": 0.0,
}


def _alice() -> SubmissionResult:
    """STORED built field by field, the way grader.runner.grade builds a result."""
    weights_sum = CheckResult(
        "test_weights_sum",
        "Do the weights sum to one?",
        "patch_weights",
        points=1.0,
        max_points=1.0,
        passed=True,
        seconds=0.12,
    )
    weights_shape = CheckResult(
        "test_weights_shape",
        "Is the weight map <H, W>?",
        "patch_weights",
        points=0.0,
        max_points=1.0,
        passed=False,
        message="The weight map has the wrong shape.",
        detail="the result has shape (3, 3), expected (4, 4)",
        seconds=0.3,
    )
    merge = CheckResult(
        "test_merge",
        "Does merging patches & averaging overlaps work?",
        "patch_merge",
        points=0.0,
        max_points=1.5,
        passed=False,
        message="Merged patches differ.",
        seconds=1.05,
    )
    return SubmissionResult(
        student_id="alice",
        assignment="patches",
        total=1.0,
        max_points=3.5,
        notebook="/course/submitted/alice/patches/patches.ipynb",
        units={
            "patch_weights": UnitResult("patch_weights", 1.0, 2.0, [weights_sum, weights_shape]),
            "patch_merge": UnitResult("patch_merge", 0.0, 1.5, [merge]),
        },
        manual_points={"patch_written": 2.0},
        cell_status={"patch_weights": "ok", "patch_merge": "ok"},
        protections=list(PROTECTION_TEXT),
        worker_restarts=1,
        peak_worker_memory_mb=812.4,
        duration_s=7.31,
        cpu_s=15.2,
        fingerprint="0123456789abcdef01234567",
    )


def test_json_form_is_the_stored_format():
    """Does a result built from fields serialise to exactly the keys and values of a stored file?"""
    result = _alice()
    assert result.to_dict() == STORED
    assert result.to_json() == json.dumps(STORED, indent=1, sort_keys=True)
    assert list(result.to_dict()["units"]) == ["patch_weights", "patch_merge"]  # the assignment's order


@pytest.mark.parametrize("stored", [STORED, BROKEN], ids=["alice", "bob"])
def test_round_trip(stored):
    """Do to_json/from_json give back an equal result and byte-identical text (ints stay ints)?"""
    result = SubmissionResult.from_dict(stored)
    text = result.to_json()
    again = SubmissionResult.from_json(text)
    assert again == result
    assert again.to_json() == text == json.dumps(stored, indent=1, sort_keys=True)
    assert '"total": 0,' in SubmissionResult.from_dict(BROKEN).to_json()


def test_from_dict_reads_fields():
    result = SubmissionResult.from_dict(STORED)
    assert result == _alice()
    assert result.max_points == 3.5 and result.manual_points == {"patch_written": 2.0}
    assert result.units["patch_weights"].grade_id == "patch_weights"
    assert [c.test for c in result.units["patch_weights"].failed_checks] == ["test_weights_shape"]
    assert result.checked_units is None and "checked_units" not in result.to_dict()
    assert SubmissionResult.from_dict(BROKEN).checked_units == ["patch_weights"]


def test_a_results_file_keeps_the_units_order():
    """The file sorts its keys: do its units still read back in the assignment's order, not alphabetically?"""
    text = SubmissionResult.from_dict(STORED).to_json()
    assert text.index('"patch_merge": {') < text.index('"patch_weights": {')  # sorted in the file
    assert list(SubmissionResult.from_json(text).units) == ["patch_weights", "patch_merge"]


def test_pool_message_keeps_unit_order():
    """The pool sends json.dumps(to_dict()) unsorted: the units must come back in the assignment's order."""
    stored = copy.deepcopy(STORED)
    stored["units"] = {"zeta": stored["units"]["patch_merge"], "alpha": stored["units"]["patch_weights"]}
    del stored["unit_order"]
    message = json.dumps(SubmissionResult.from_dict(stored).to_dict())
    assert list(SubmissionResult.from_json(message).units) == ["zeta", "alpha"]


def test_old_file_with_unknown_and_missing_keys_loads():
    """Does a file from another version (an extra key, keys it predates) load, keep the extra key
    and take defaults for the missing ones?"""
    old = copy.deepcopy(STORED)
    old["grader_version"] = "2023.1"
    old["units"]["patch_merge"]["tests"][0]["legacy_note"] = "kept"
    for key in ("peak_worker_memory_mb", "unsafe_no_sandbox", "fingerprint", "protections", "unit_order"):
        del old[key]
    result = SubmissionResult.from_json(json.dumps(old, indent=1, sort_keys=True))
    assert result.extra_keys == {"grader_version": "2023.1"}
    assert result.units["patch_merge"].checks[0].extra_keys == {"legacy_note": "kept"}
    assert (result.peak_worker_memory_mb, result.unsafe_no_sandbox, result.fingerprint, result.protections) == (
        0.0,
        False,
        None,
        [],
    )
    assert result.to_dict()["grader_version"] == "2023.1"
    assert result.to_dict()["units"]["patch_merge"]["tests"][0]["legacy_note"] == "kept"
    # It reports as before (its units in grade_id order: the file was written with sorted keys).
    assert "| `patch_merge` | 0 / 1.5 | ✗ |\n| `patch_weights` | 1 / 2 | ✗ |" in feedback_markdown(result)


@pytest.mark.parametrize(
    "text",
    [
        '{"forged": true, "total": 1000}',
        "[1, 2]",
        "not json",
        '{"student_id": "x", "assignment": "a", "total": 1, "max": 1, "units": {"u": {"points": 1}}}',
    ],
)
def test_what_is_not_a_result_is_refused(text):
    with pytest.raises(ResultFormatError):
        SubmissionResult.from_json(text)


def test_feedback_markdown_is_unchanged():
    assert feedback_markdown(_alice()) == (
        "# Feedback: patches — alice\n\n**Autograded score: 1 / 3.5**\n\n| unit | points | |\n|---|---|---|\n"
        "| `patch_weights` | 1 / 2 | ✗ |\n| `patch_merge` | 0 / 1.5 | ✗ |\n\n## `patch_weights` — 1 / 2\n\n"
        "- **passed** (1 / 1): Do the weights sum to one?\n- **failed** (0 / 1): Is the weight map <H, W>?\n"
        "  - The weight map has the wrong shape.\n  - Detail: the result has shape (3, 3), expected (4, 4)\n\n"
        "## `patch_merge` — 0 / 1.5\n\n- **failed** (0 / 1.5): Does merging patches & averaging overlaps work?\n"
        "  - Merged patches differ.\n\n## Written answers\n\n"
        "Graded by hand by the course staff: `patch_written` (2 pts)\n"
    )
    assert feedback_markdown(SubmissionResult.from_dict(BROKEN)) == (
        "# Feedback: patches — bob\n\n**Autograded score: 0 / 2**\n\n"
        "> **Graded with --unsafe-no-sandbox: student code ran WITHOUT the sandbox (it could read and write "
        "everything the grading user can, use the network and signal other processes).**\n\n"
        "> Your notebook could not be graded: not valid notebook JSON (line 1)\n\n"
        "| unit | points | |\n|---|---|---|\n| `patch_weights` | 0 / 2 | ✗ |\n\n## `patch_weights` — 0 / 2\n\n"
    )


def test_feedback_html_is_unchanged():
    style = (
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}.ok{color:#176}.bad{color:#a11}"
        "li{margin:.3em 0}</style>"
    )
    assert feedback_html(_alice()) == (
        "<!doctype html><meta charset='utf-8'><title>patches: alice</title>" + style + "<h1>patches — alice</h1>"
        "<p><strong>Autograded score: 1 / 3.5</strong></p><h2><code>patch_weights</code>: 1 / 2</h2><ul>"
        "<li class='ok'>✓ Do the weights sum to one? (1/1)</li><li class='bad'>✗ Is the weight map &lt;H, W&gt;? "
        "(0/1)<br><em>The weight map has the wrong shape.</em><br><small>the result has shape (3, 3), expected "
        "(4, 4)</small></li></ul><h2><code>patch_merge</code>: 0 / 1.5</h2><ul><li class='bad'>✗ Does merging "
        "patches &amp; averaging overlaps work? (0/1.5)<br><em>Merged patches differ.</em></li></ul>"
    )
    assert feedback_html(SubmissionResult.from_dict(BROKEN)) == (
        "<!doctype html><meta charset='utf-8'><title>patches: bob</title>" + style + "<h1>patches — bob</h1>"
        "<p><strong>Autograded score: 0 / 2</strong></p><p class='bad'><strong>Graded with --unsafe-no-sandbox: "
        "student code ran WITHOUT the sandbox (it could read and write everything the grading user can, use the "
        "network and signal other processes).</strong></p><p class='bad'>Your notebook could not be graded: "
        "not valid notebook JSON (line 1)</p><h2><code>patch_weights</code>: 0 / 2</h2><ul></ul>"
    )


def test_gradescope_json_is_unchanged():
    """Is the Gradescope JSON of a known result exactly as pinned (visibility per check: hidden checks after the
    due date, the public notebook test visible; every text plain)?"""
    assert gradescope_json(_alice()) == {
        "score": 1.0,
        "output": "Autograded units; written answers are graded by hand.",
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "visibility": "after_published",
        "stdout_visibility": "hidden",
        "tests": [
            {
                "name": "patches: your notebook was found and its graded cells ran",
                "name_format": "text",
                "score": 0.0,
                "max_score": 0.0,
                "status": "passed",
                "output": "patch_weights: ran without an error\npatch_merge: ran without an error",
                "output_format": "text",
                "visibility": "visible",
            },
            {
                "name": "patch_weights: Do the weights sum to one?",
                "name_format": "text",
                "number": "1.1",
                "tags": ["patch_weights"],
                "score": 1.0,
                "max_score": 1.0,
                "status": "passed",
                "output": "",
                "output_format": "text",
                "visibility": "after_due_date",
            },
            {
                "name": "patch_weights: Is the weight map <H, W>?",
                "name_format": "text",
                "number": "1.2",
                "tags": ["patch_weights"],
                "score": 0.0,
                "max_score": 1.0,
                "status": "failed",
                "output": "The weight map has the wrong shape.\nthe result has shape (3, 3), expected (4, 4)",
                "output_format": "text",
                "visibility": "after_due_date",
            },
            {
                "name": "patch_merge: Does merging patches & averaging overlaps work?",
                "name_format": "text",
                "number": "2.1",
                "tags": ["patch_merge"],
                "score": 0.0,
                "max_score": 1.5,
                "status": "failed",
                "output": "Merged patches differ.",
                "output_format": "text",
                "visibility": "after_due_date",
            },
        ],
    }
    assert json.dumps(gradescope_json(SubmissionResult.from_dict(BROKEN))) == (
        '{"score": 0, "output": "Your notebook could not be graded: not valid notebook JSON (line 1)", "output_format": "text", "test_output_format": "text", "test_name_format": "text", "visibility": "after_published", "stdout_visibility": "hidden", "tests": [{"name": "patches: your notebook was found and its graded cells ran", "name_format": "text", "score": 0.0, "max_score": 0.0, "status": "failed", "output": "Your notebook could not be graded: not valid notebook JSON (line 1)", "output_format": "text", "visibility": "visible"}]}'
    )


def test_gradebook_and_summary_are_unchanged(tmp_path):
    results = [SubmissionResult.from_dict(BROKEN), _alice()]
    path = write_gradebook(results, ["patch_weights", "patch_merge", "other"], tmp_path)
    assert path.read_text() == (
        "student_id,assignment,patch_weights,patch_merge,other,total,max,notes\n"
        "alice,patches,1,0,,1,3.5,\nbob,patches,0,,,0,2,not valid notebook JSON (line 1)\n"
    )
    assert summary_table(results) == (
        "student                  assignment          score  notes\n"
        "alice                    patches           1 / 3.5    worker restarted 1x\n"
        "bob                      patches           0 / 2      not valid notebook JSON (line 1)"
    )


def test_cached_result_lists_units_in_the_notebooks_order(tmp_path):
    """A results file stores units with sorted keys: does reading it back for the reports restore the order of the
    assignment's notebook (the order the feedback follows)?"""
    from grader.assignments import assignment_names, load_assignment
    from grader.run.store import read_cached_result

    name = assignment_names()[0]
    order = [unit.grade_id for unit in load_assignment(name).auto_units]
    assert order != sorted(order), "pick an assignment whose units are not in alphabetical order"
    result = SubmissionResult(student_id="bob", assignment=name, total=0.0, max_points=0.0)
    result.units = {gid: UnitResult(grade_id=gid, points=0.0, max_points=1.0) for gid in order}
    path = tmp_path / "bob.json"
    path.write_text(result.to_json())
    assert list(json.loads(path.read_text())["units"]) == sorted(order)
    assert list(read_cached_result(path).units) == order
