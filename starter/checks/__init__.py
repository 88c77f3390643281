"""Public self-checks students run right after each TODO: `check("fcn32s", FCN32s)`.

These are deliberately small (shapes, names, tiny known values taken from the assignment
text). They never contain the answer to a TODO, and passing them does not guarantee full
marks: the hidden checks the grader runs are more thorough.

Each assignment's checks are written in its folder, `assignments/<assignment>/public_checks.py`,
and imported on first use: from there in the kit's repository, and from
`starter/checks/<assignment>.py` in the student bundle, where `segkit release` copies them.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from starter.checks.core import CHECKS, CheckFailed

__all__ = ["check", "CheckFailed", "CHECKS"]

# In the kit's repository: <kit>/starter/checks/__init__.py -> <kit>/assignments/*/public_checks.py.
ASSIGNMENTS_DIR = Path(__file__).resolve().parents[2] / "assignments"


def _load_all():
    for module in pkgutil.iter_modules(__path__):  # the student bundle's copies (and core, shared)
        importlib.import_module(f"{__name__}.{module.name}")
    for path in sorted(ASSIGNMENTS_DIR.glob("*/public_checks.py")):
        name = f"{__name__}.{path.parent.name}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise


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
