"""`python -I -S launch.py PLAN_JSON PROGRAM [ARG...]`: apply the plan to this process, then exec PROGRAM.

The alternative to a ``preexec_fn`` (which runs Python in the forked child of a grader that has
threads, where CPython warns it may deadlock): the grader starts this file instead, with the
descriptors it passes, and the confinement survives the ``exec`` (Landlock and seccomp stay, kept
by no_new_privs). It loads the package by path, so it needs nothing else of the kit. On failure it
writes the reason to stderr and exits with PREEXEC_FAILED (71).
"""

from __future__ import annotations

import importlib
import os
import sys
import types

PACKAGE = "segkit_sandbox"  # the name the worker side gives this folder (it cannot import `grader`)


def load(name: str, folder: str | None = None) -> types.ModuleType:
    """Module `name` of this folder (confine, protocol), loaded by path as `segkit_sandbox.<name>`
    without running the package's __init__ (which belongs to the trusted side)."""
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [folder]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")


def load_confine() -> types.ModuleType:
    return load("confine")


def main() -> None:
    confine = load_confine()
    try:
        confine.apply(confine.Plan.from_json(sys.argv[1]))
    except Exception as exc:
        os.write(2, f"segkit: the worker could not be confined: {exc}\n".encode())
        os._exit(confine.PREEXEC_FAILED)
    os.execv(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
