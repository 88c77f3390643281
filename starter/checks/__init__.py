"""Public self-checks students run right after each TODO: `check("fcn32s", FCN32s)`.

These are deliberately small (shapes, names, tiny known values taken from the assignment
text). They never contain the answer to a TODO, and passing them does not guarantee full
marks: the hidden checks the grader runs are more thorough. Each assignment's checks live in
`starter/checks/<assignment>.py`, imported on first use.
"""

from __future__ import annotations

import importlib
import pkgutil

from starter.checks.core import CHECKS, CheckFailed

__all__ = ["check", "CheckFailed", "CHECKS"]


def _load_all():
    for module in pkgutil.iter_modules(__path__):
        if module.name != "core":
            importlib.import_module(f"{__name__}.{module.name}")


def check(unit: str, *objects) -> None:
    """Run the public checks of one graded unit on your objects; raise CheckFailed with a hint."""
    _load_all()
    if unit not in CHECKS:
        raise KeyError(f"no public checks for {unit!r}; known units: {', '.join(sorted(CHECKS))}")
    try:
        CHECKS[unit](*objects)
    except NotImplementedError:
        raise CheckFailed(
            f"✗ {unit}: not implemented yet — fill in the cell marked YOUR CODE HERE above, "
            "run it, then run this check again."
        ) from None
    except CheckFailed as exc:
        raise CheckFailed(f"✗ {unit}: {exc}") from None
    print(f"✓ {unit}: public checks passed (the hidden checks used for grading test more cases).")
