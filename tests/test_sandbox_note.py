"""The sandbox layer a submission was graded in reaches its feedback and Gradescope output, not only report.md."""

from __future__ import annotations

import json

from grader.report import feedback_html, feedback_markdown, gradescope_json
from grader.results import SubmissionResult
from grader.sandbox import PROTECTION_TEXT
from grader.sandbox.protections import NAMESPACE_ONLY


def _result(protections: list[str]) -> SubmissionResult:
    return SubmissionResult("alice", "patches", 0.0, 16.0, protections=protections)


def test_a_weaker_layer_is_named_in_every_student_facing_output():
    """Graded in the Landlock layer (no namespaces), do the .md, the .html and the Gradescope JSON say which
    protections were not active, and say nothing when every one was?"""
    landlock = _result([name for name in PROTECTION_TEXT if name not in NAMESPACE_ONLY])
    outputs = [feedback_markdown(landlock), feedback_html(landlock), json.dumps(gradescope_json(landlock))]
    for text in outputs:
        assert "not active: network_namespace, pid_namespace" in text
    full = _result(list(PROTECTION_TEXT))
    for text in (feedback_markdown(full), feedback_html(full), json.dumps(gradescope_json(full))):
        assert "not active" not in text
