"""What students see of their results, and when (issue 29): `[visibility]` in assignment.toml, carried
into Gradescope's results.json (validated against tests/gradescope_results.schema.json, written from
Gradescope's autograder specification) and into the local feedback at each release stage."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jsonschema
import pytest

from grader import report
from grader.assignments import (
    ASSIGNMENTS_DIR,
    CONFIG_NAME,
    VISIBILITY_LEVELS,
    AssignmentConfigError,
    VisibilityConfig,
    assignment_names,
    load_assignment,
    read_config,
)
from grader.cli import build_parser
from grader.report import feedback_html, feedback_markdown, gradescope_json
from grader.results import CheckResult, SubmissionResult, UnitResult
from integrations.gradescope import STAGE_STUDENT, gradescope_results

SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())
# One unit per level, plus a check of the visible unit set apart on its own.
CONFIG = """
title = "T"
[visibility]
hidden_checks = "after_due_date"
public_checks = "visible"
total = "after_published"
stdout = "after_due_date"
[visibility.units]
u_visible = "visible"
u_published = "after_published"
u_hidden = "hidden"
[visibility.checks]
test_u_visible_1 = "after_published"
"""
EXPECTED = {
    "test_u_visible_0": "visible",
    "test_u_visible_1": "after_published",
    "test_u_due_0": "after_due_date",
    "test_u_published_0": "after_published",
    "test_u_hidden_0": "hidden",
}


def _unit_of(test: str) -> str:
    return "_".join(test.split("_")[1:3])  # test_u_visible_1 -> u_visible


def _validate(results: dict):
    jsonschema.Draft202012Validator(SCHEMA).validate(results)


@pytest.fixture()
def configured(tmp_path, monkeypatch) -> VisibilityConfig:
    path = tmp_path / CONFIG_NAME
    path.write_text(CONFIG)
    visibility = read_config(path).visibility
    monkeypatch.setattr(report, "visibility_of", lambda assignment: visibility)
    return visibility


def _result() -> SubmissionResult:
    units = {}
    for gid, count in (("u_visible", 2), ("u_due", 1), ("u_published", 1), ("u_hidden", 1)):
        checks = [
            CheckResult(f"test_{gid}_{n}", f"Is {gid} #{n} right?", gid, 0.0, 1.0, False, f"{gid} #{n} is wrong.")
            for n in range(count)
        ]
        units[gid] = UnitResult(gid, 0.0, float(count), checks)
    return SubmissionResult("alice", "t", 0.0, 5.0, units=units, cell_status=dict.fromkeys(units, "ok"))


def test_config_reads_every_level_and_refuses_others(tmp_path):
    """Does [visibility] read each level, per unit and per check, and refuse an unknown level or key?"""
    path = tmp_path / CONFIG_NAME
    path.write_text(CONFIG)
    visibility = read_config(path).visibility
    assert {visibility.for_check(_unit_of(test), test) for test in EXPECTED} == set(VISIBILITY_LEVELS)
    assert all(visibility.for_check(_unit_of(test), test) == level for test, level in EXPECTED.items())
    assert visibility.stdout == "after_due_date" and visibility.total == "after_published"
    for bad in ('hidden_checks = "soon"', 'when = "visible"', "units = 3"):
        path.write_text(f'title = "T"\n[visibility]\n{bad}\n')
        with pytest.raises(AssignmentConfigError):
            read_config(path)
    path.write_text('title = "T"\n')
    assert read_config(path).visibility == VisibilityConfig()


def test_gradescope_json_carries_every_level_as_configured(configured):
    """Does results.json give each check the level configured for it (its own, its unit's, the default),
    the public test `public_checks`, the top level `total` and `stdout`, and validate against the schema?"""
    results = gradescope_json(_result())
    _validate(results)
    levels = {test["name"]: test["visibility"] for test in results["tests"]}
    for test, level in EXPECTED.items():
        gid = _unit_of(test)
        name = f"{gid}: Is {gid} #{test[-1]} right?"
        assert levels[name] == level, (name, levels)
    public = results["tests"][0]
    assert public["visibility"] == "visible" and public["max_score"] == 0
    assert results["visibility"] == "after_published" and results["stdout_visibility"] == "after_due_date"
    assert set(levels.values()) == set(VISIBILITY_LEVELS)


def test_combined_results_validate(tmp_path):
    """Does the combined /autograder/results/results.json validate, graded or not, and keep the levels
    of the assignment's [visibility]?"""
    assignment = "patches"
    spec = load_assignment(assignment)
    unit = spec.auto_units[0]
    result = SubmissionResult(
        STAGE_STUDENT,
        assignment,
        1.0,
        spec.max_points,
        units={
            unit.grade_id: UnitResult(unit.grade_id, 1.0, 1.0, [CheckResult("test_x", "Q?", unit.grade_id, 1, 1, True)])
        },
    )
    path = tmp_path / "gradescope" / assignment / STAGE_STUDENT / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(gradescope_json(result)))
    staged = {"assignments": {assignment: {"staged": True, "source": "<b>x</b>.ipynb", "note": ""}}}
    combined = gradescope_results(tmp_path, [assignment], staged)
    _validate(combined)
    assert combined["visibility"] == spec.config.visibility.total
    assert combined["stdout_visibility"] == spec.config.visibility.stdout
    assert combined["tests"][1]["visibility"] == spec.config.visibility.hidden_checks
    missing = gradescope_results(tmp_path, [assignment, "fcn"], staged)
    _validate(missing)
    assert missing["tests"][-1]["visibility"] == load_assignment("fcn").config.visibility.public_checks
    with pytest.raises(jsonschema.ValidationError):
        _validate({**combined, "visibilty": "visible"})  # the schema refuses what Gradescope does not know


def test_release_stages(configured):
    """Before the due date, does the feedback show only `visible` checks and no total; after it, every
    check but the `hidden` ones and the total; and never a hidden check's question?"""
    result = _result()
    before, after = feedback_markdown(result, "before"), feedback_markdown(result, "after")
    assert "Is u_visible #0 right?" in before and "Is u_due #0 right?" not in before
    assert "Is u_visible #1 right?" not in before and "shown once the grades are published" in before
    assert "Autograded score: 0 / 5" not in before
    assert "Is u_due #0 right?" in after and "Is u_published #0 right?" in after and "Autograded score" in after
    assert "? / 1" in after  # u_hidden's points stay withheld: one of its checks is never shown
    for text in (before, after, feedback_html(result, "before"), feedback_html(result, "after")):
        assert "Is u_hidden #0 right?" not in text and "not shown to students" in text
    html_before = feedback_html(result, "before")
    assert "Is u_visible #0 right?" in html_before and "Is u_due #0 right?" not in html_before
    with pytest.raises(ValueError):
        feedback_markdown(result, "during")


def test_cli_takes_the_release_stage():
    """Does `python -m grader` take --release-stage before|after and refuse anything else?"""
    parser = build_parser()
    assert parser.parse_args(["x", "--release-stage", "before"]).release_stage == "before"
    assert parser.parse_args(["x"]).release_stage is None
    with pytest.raises(SystemExit):
        parser.parse_args(["x", "--release-stage", "later"])


def _check_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


@pytest.mark.parametrize("assignment", assignment_names())
def test_bundled_visibility_names_real_units_and_checks(assignment):
    """Does every assignment declare [visibility], naming only units and checks that exist?"""
    text = (ASSIGNMENTS_DIR / assignment / CONFIG_NAME).read_text()
    assert "[visibility]" in text
    spec = load_assignment(assignment)
    visibility = spec.config.visibility
    assert {gid for gid, _ in visibility.units} <= {u.grade_id for u in spec.auto_units}
    assert {name for name, _ in visibility.checks} <= _check_names(spec.checks_path)
