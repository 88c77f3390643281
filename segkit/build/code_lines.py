"""How much code does a solution notebook give, and how much do students write?

Counted in non-blank, non-comment lines of code cells: the lines between ``### BEGIN SOLUTION``
and ``### END SOLUTION`` are the student's, every other code line is given (setup, checks,
teaching cells, and the signature lines around a solution region). The docstrings of the
functions and classes a graded cell defines are the unit's specification: they count as neither.

    python -m segkit.build.code_lines          # the table for every assignment
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from grader.assignments import SOLUTIONS_DIR, assignment_names, cell_source, nbgrader_meta, read_notebook

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"


@dataclass(frozen=True)
class CodeLines:
    """Lines of code in one solution notebook: ``given`` by the kit, ``student`` to write."""

    given: int
    student: int


def docstring_lines(source: str) -> set[int]:
    """1-based line numbers of the docstrings of every function and class `source` defines.

    A cell that does not parse (a shell escape, a magic) has none: its lines all count as code.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or not node.body:
            continue
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def count_cell(source: str, *, skip_docstrings: bool) -> CodeLines:
    """Given and student code lines of one code cell (docstrings skipped where `skip_docstrings`)."""
    skipped = docstring_lines(source) if skip_docstrings else set()
    given = student = 0
    in_solution = False
    for number, line in enumerate(source.splitlines(), start=1):
        text = line.strip()
        if text.startswith(BEGIN):
            in_solution = True
        elif text.startswith(END):
            in_solution = False
        elif text and not text.startswith("#") and number not in skipped:
            if in_solution:
                student += 1
            else:
                given += 1
    return CodeLines(given, student)


def count_notebook(notebook: dict) -> CodeLines:
    """Given and student code lines of a solution notebook (see the module docstring)."""
    given = student = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        graded = bool(nbgrader_meta(cell).get("solution"))
        counted = count_cell(cell_source(cell), skip_docstrings=graded)
        given += counted.given
        student += counted.student
    return CodeLines(given, student)


def solution_notebook(name: str) -> Path:
    """The solution notebook of assignment `name`."""
    return SOLUTIONS_DIR / name / f"{name}.ipynb"


def count_all(names: list[str] | None = None) -> dict[str, CodeLines]:
    """Assignment name -> its solution notebook's code lines."""
    return {name: count_notebook(read_notebook(solution_notebook(name))) for name in names or assignment_names()}


def table(counts: dict[str, CodeLines]) -> str:
    """A Markdown table of the counts, with the given / student ratio."""
    rows = ["| assignment | given | student | given / student |", "|---|---:|---:|---:|"]
    for name, lines in counts.items():
        ratio = f"{lines.given / lines.student:.2f}" if lines.student else "-"
        rows.append(f"| {name} | {lines.given} | {lines.student} | {ratio} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segkit.build.code_lines", description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    args = parser.parse_args(argv)
    print(table(count_all(args.assignments or None)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
