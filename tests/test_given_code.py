"""Is the code a notebook gives shorter than the code students write? (segkit.build.code_lines; no execution)"""

from __future__ import annotations

import pytest

from grader.assignments import assignment_names, read_notebook
from segkit.build.code_lines import CodeLines, count_cell, count_notebook, solution_notebook, table

# Notebooks whose given code may still be longer than the student's, with what was measured
# (`python -m segkit.build.code_lines`): given code may shrink, never grow past these figures. None left:
# every notebook gives less code than students write (a new assignment starts without an exception).
KNOWN_EXCEPTIONS: dict[str, CodeLines] = {}

CELL = '''\
def unit(x):
    """The unit's specification:
    several lines, counted as neither."""
    # a comment
    ### BEGIN SOLUTION
    y = x + 1

    return y  # two student lines
    ### END SOLUTION


helper = unit(1)
'''


def test_counts_solution_regions_as_student_code_and_skips_docstrings():
    """Are solution-region lines the student's, other code lines given, and blanks, comments and docstrings neither?"""
    assert count_cell(CELL, skip_docstrings=True) == CodeLines(given=2, student=2)
    assert count_cell(CELL, skip_docstrings=False) == CodeLines(given=4, student=2)


def test_a_cell_that_does_not_parse_counts_every_code_line():
    """Does a cell with a shell escape still count its lines (no docstring found, no crash)?"""
    assert count_cell("!pip list\nx = 1\n", skip_docstrings=True) == CodeLines(given=2, student=0)


@pytest.mark.parametrize("name", assignment_names())
def test_given_code_is_shorter_than_student_code(name):
    """Does each solution notebook give less code than students write, or no more than its recorded exception?"""
    lines = count_notebook(read_notebook(solution_notebook(name)))
    shown = table({name: lines})
    known = KNOWN_EXCEPTIONS.get(name)
    if known is None:
        assert lines.given < lines.student, f"{name} gives more code than students write:\n{shown}"
        return
    assert lines.given <= known.given, f"{name}'s given code grew past its recorded {known.given} lines:\n{shown}"
    assert lines.given >= lines.student, f"{name} now gives less code than students write: drop its exception\n{shown}"
