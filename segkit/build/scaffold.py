"""`segkit new-assignment NAME`: scaffold a new assignment that passes the completeness test.

Writes, for NAME (a Python identifier in lower case):

    assignments/NAME/assignment.toml     title, datasets, expensive units, hostile target
    assignments/NAME/test_NAME.py        hidden checks of the one unit NAME_accuracy
    assignments/NAME/examples.py         a typical bug and an attack on that unit
    assignments/NAME/alternatives.py     two independent correct implementations
    assignments/NAME/public_checks.py    the public check students run after the TODO
    solutions/NAME/NAME.ipynb            setup cell, the unit `pixel_accuracy`, its check, a written question

and then regenerates notebooks/NAME/NAME.ipynb and starter/assignments.json. Replace the
example unit with your own, following docs/adding-an-assignment.md. Nothing is overwritten:
an existing file stops the command before it writes anything.
"""

from __future__ import annotations

import argparse
import keyword
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.assignments import REPO_ROOT
from starter.common import write_atomic, write_notebook

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{1,30}")

TOML = """\
# The {title} assignment: what the grader and the proof tools know beyond the notebook and its checks.
# See docs/adding-an-assignment.md for every key.

title = "{title}"
datasets = []  # data_scripts modules the notebook prepares (e.g. "cmp_facade"); none: synthetic data only

[grading]
# Units whose checks build large networks (seconds per check): single-bug proofs skip them for other units.
expensive_units = []

[proof]
# The unit the hostile corpus attacks (a unit defined by plain functions).
hostile_target = "{name}_accuracy"
"""

HIDDEN_CHECKS = '''\
"""Hidden checks of the {title} assignment (notebooks/{name}/{name}.ipynb), one section per graded unit.

Every check sends a probe to the student's sandboxed worker and compares the plain data that
comes back with the same probe run on the reference solution here. The points of a unit's
checks add up to the unit's points in the solution notebook (the completeness test verifies it).
"""

from grader.harness import assert_close, expect, unit

TIMEOUT = 10  # seconds; each probe takes milliseconds, so a hang fails quickly


# --- {name}_accuracy (2 points) ------------------------------------------------------------------


def probe_accuracy(ns, pred, target):
    value = ns["pixel_accuracy"](pred.clone(), target.clone())
    return {{"value": value, "type": type(value).__name__}}


def _cases(ignored: bool):
    import torch

    generator = torch.Generator().manual_seed(3)
    cases = []
    for shape in ((1, 5, 7), (3, 16, 11)):
        pred = torch.randint(0, 4, shape, generator=generator)
        target = torch.randint(0, 4, shape, generator=generator)
        if ignored:
            target[:, : shape[1] // 2] = 255  # the top half is not labelled
        cases.append((pred, target))
    return cases


def _check(sub, ref, ignored: bool):
    for pred, target in _cases(ignored):
        what = f"pixel_accuracy on a batch of shape {{tuple(pred.shape)}}"
        actual = sub.call(probe_accuracy, pred, target, timeout=TIMEOUT)
        expected = ref.call(probe_accuracy, pred, target)
        expect(type(actual) is dict and actual.get("type") == "float",
               f"{{what}}: return a Python float (use float(...) or .item())")
        assert_close(actual["value"], expected["value"], what=what, rtol=1e-6)


@unit("{name}_accuracy", points=1, message="pixel_accuracy should be the fraction of pixels where the prediction "
      "equals the label, as a Python float.")
def test_accuracy_all_labelled(sub, ref):
    """With every pixel labelled, is the accuracy the fraction of equal pixels?"""
    _check(sub, ref, ignored=False)


@unit("{name}_accuracy", points=1, message="Pixels labelled ignore_index (255) must count neither as right nor "
      "as wrong: leave them out of the numerator and the denominator.")
def test_accuracy_ignores_unlabelled(sub, ref):
    """With half the pixels labelled 255, are those pixels left out?"""
    _check(sub, ref, ignored=True)
'''

EXAMPLES = '''\
"""Example submissions of the {title} assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once. HOSTILE maps a grade_id to a cell that attacks the grader instead, written by one
of the corpus's attack kinds (EXAMPLE_ATTACKS in segkit/proof/hostile.py).
"""

from segkit.proof.hostile import attack

BUGS = {{
    # Ignored pixels counted in the denominator.
    "{name}_accuracy": [("valid.sum()", "target.numel()")],
}}

HOSTILE = {{
    # A forged result line and always-true comparisons.
    "{name}_accuracy": attack("forge_equality", "pixel_accuracy(pred, target, ignore_index=255)"),
}}
'''

ALTERNATIVES = '''\
"""Two independent correct implementations of every {title} unit (see segkit/proof/alternatives.py)."""

ACCURACY_NUMPY = \'\'\'
def pixel_accuracy(pred, target, ignore_index=IGNORE_INDEX):
    """NumPy, with a boolean mask."""
    pred, target = pred.cpu().numpy(), target.cpu().numpy()
    labelled = target != ignore_index
    if not labelled.any():
        return 0.0
    return float((pred[labelled] == target[labelled]).mean())
\'\'\'

ACCURACY_LOOP = \'\'\'
def pixel_accuracy(pred, target, ignore_index=IGNORE_INDEX):
    """A plain loop over the pixels."""
    right = total = 0
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()):
        if t != ignore_index:
            total += 1
            right += int(p == t)
    return right / total if total else 0.0
\'\'\'

ALTERNATIVES = {{
    "{name}_accuracy": [ACCURACY_NUMPY, ACCURACY_LOOP],
}}
'''

PUBLIC_CHECKS = '''\
"""Public self-checks of the {title} assignment (see starter.checks).

Small cases built from the assignment text only; the hidden checks test more cases.
"""

import torch

from starter.checks.core import expect as _expect, register as _register


@_register("{name}_accuracy")
def _check_accuracy(pixel_accuracy):
    pred = torch.tensor([[[0, 1], [2, 2]]])
    target = torch.tensor([[[0, 1], [1, 255]]])
    value = pixel_accuracy(pred, target)
    _expect(type(value) is float, f"return a Python float, got {{type(value).__name__}} (use float(...))")
    _expect(abs(value - 2 / 3) < 1e-6, f"2 of the 3 labelled pixels are right: expected 0.6667, got {{value:.4f}} "
            "(is the pixel labelled 255 left out?)")
'''

SETUP_SOURCE = """\
# Setup (run this first). On Colab: mounts your Google Drive and uses the course kit from the
# folder below. On a GPU server: uses your conda/pip environment as it is. See STUDENT_README.md.
SEGKIT_DIR = ""  # Colab: the kit's folder in Drive ("" = $SEGKIT_DRIVE_DIR or /content/drive/MyDrive/segkit)
import os
import sys

if "google.colab" in sys.modules and not os.environ.get("SEGKIT_GRADING"):  # `starter` from the kit in Drive
    from google.colab import drive

    drive.mount("/content/drive")
    sys.path.insert(0, SEGKIT_DIR or os.environ.get("SEGKIT_DRIVE_DIR") or "/content/drive/MyDrive/segkit")

from starter.environment import setup_notebook  # No module 'starter'? The kit is not in SEGKIT_DIR: see STUDENT_README.md

# Prints the device, versions and data; seeds every generator. FAST ($SEGKIT_FAST=1): tiny data (CI, try-outs).
FAST, device = setup_notebook("{name}", drive_dir=SEGKIT_DIR or None)

import torch

from starter.checks import check, check_all
from starter.constants import IGNORE_INDEX"""

UNIT_SOURCE = '''\
def pixel_accuracy(pred, target, ignore_index=IGNORE_INDEX):
    """Fraction of labelled pixels that are predicted right.

    Inputs:
    - pred: int64 tensor (N, H, W), predicted class ids
    - target: int64 tensor (N, H, W), labels; ignore_index marks unlabelled pixels

    Returns:
    - accuracy: Python float in [0, 1]; 0.0 when no pixel is labelled
    """
    ### BEGIN SOLUTION
    valid = target != ignore_index
    if not valid.any():
        return 0.0
    return float((pred[valid] == target[valid]).sum() / valid.sum())
    ### END SOLUTION'''


def _meta(grade_id: str, role: str, *, points: float | None = None, solution: bool = False, grade: bool = False):
    nbgrader = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3, "solution": solution}
    if points is not None:
        nbgrader["points"] = points
    return {"nbgrader": nbgrader, "segkit": {"role": role}}


def solution_notebook(name: str, title: str) -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(f"# Assignment: {title}\n\nReplace this introduction with the assignment's text."),
        new_code_cell(SETUP_SOURCE.format(name=name), metadata=_meta(f"{name}_setup", "setup")),
        new_markdown_cell(
            "## 1. Pixel accuracy\n\n`pixel_accuracy(pred, target)` is the fraction of *labelled* "
            "pixels (label not 255) where the prediction equals the label, as a Python `float`."
        ),
        new_code_cell(UNIT_SOURCE, metadata=_meta(f"{name}_accuracy", "graded", points=2, solution=True, grade=True)),
        new_code_cell(f'check("{name}_accuracy", pixel_accuracy)', metadata=_meta(f"{name}_accuracy_check", "check")),
        new_markdown_cell(
            "**Question 1.** Why leave unlabelled pixels out of the accuracy rather than count them as wrong?"
        ),
        nbformat.v4.new_markdown_cell(
            "*Model answer (instructors):* they carry no label, so neither answer is right or wrong; counting them "
            "would make the score depend on how much of the image is unlabelled.",
            metadata=_meta(f"{name}_q1", "written", points=1, solution=True, grade=True),
        ),
        new_code_cell(
            "# Before you submit: every graded unit's public check, as last run in this session.\n"
            f'check_all("{name}")',
            metadata=_meta(f"{name}_check_all", "check"),
        ),
    ]
    notebook = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    return notebook


def planned_files(name: str, title: str, root: Path = REPO_ROOT) -> dict[Path, str]:
    values = {"name": name, "title": title}
    folder = root / "assignments" / name
    return {
        folder / "assignment.toml": TOML.format(**values),
        folder / f"test_{name}.py": HIDDEN_CHECKS.format(**values),
        folder / "examples.py": EXAMPLES.format(**values),
        folder / "alternatives.py": ALTERNATIVES.format(**values),
        folder / "public_checks.py": PUBLIC_CHECKS.format(**values),
    }


def scaffold(name: str, title: str | None = None, root: Path = REPO_ROOT) -> list[Path]:
    """Write the new assignment's files; return them. Raises FileExistsError before writing anything."""
    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise ValueError(
            f"{name!r}: an assignment name is a lower-case identifier of 2-31 characters (e.g. 'instance')"
        )
    title = title or name.replace("_", " ").title()
    if '"' in title or "\\" in title:
        raise ValueError("the title may not contain quotes or backslashes")
    files = planned_files(name, title, root)
    solution = root / "solutions" / name / f"{name}.ipynb"
    existing = [p for p in [*files, solution, root / "assignments" / name] if p.exists()]
    if existing:
        raise FileExistsError(f"{name!r} exists already: {', '.join(str(p.relative_to(root)) for p in existing)}")
    for path, text in files.items():
        write_atomic(path, text)
    write_notebook(solution, solution_notebook(name, title))
    return [*files, solution]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="segkit new-assignment", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the assignment's name: folder, notebook and grade_id prefix (e.g. instance)")
    parser.add_argument("--title", help="human-readable title (default: from the name)")
    parser.add_argument("--no-generate", action="store_true", help="do not regenerate notebooks/ and the manifest")
    options = parser.parse_args(argv)
    try:
        written = scaffold(options.name, options.title)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    if not options.no_generate:
        from segkit.build import generate, release

        generate.main([])
        release.main(["--manifest"])
    print(
        "\nNext: replace the example unit with yours (docs/adding-an-assignment.md), then "
        "`make generate` and `make test`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
