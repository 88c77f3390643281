"""Proof tools: evidence that the hidden checks grade right (bundled examples, mutation testing,
the hostile corpus, correct alternatives). The grading engine never imports this package."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from grader.assignments import ASSIGNMENTS_DIR


def assignment_module(assignment: str, module: str) -> ModuleType:
    """Import ``assignments/<assignment>/<module>.py`` (a folder, not a package) once per process."""
    key = f"segkit_assignment_{assignment}_{module}"
    if key not in sys.modules:
        path = ASSIGNMENTS_DIR / assignment / f"{module}.py"
        if not path.is_file():
            raise FileNotFoundError(f"assignment {assignment!r} has no {module}.py (expected at {path})")
        spec = importlib.util.spec_from_file_location(key, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[key] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]
