"""`python -I -S launch.py PLAN_JSON PROGRAM [ARG...]`: apply the plan to this process, then exec PROGRAM.

The alternative to a ``preexec_fn`` (which runs Python in the forked child of a grader that has
threads, where CPython warns it may deadlock): the grader starts this file instead, with the
descriptors it passes, and the confinement survives the ``exec`` (Landlock and seccomp stay, kept
by no_new_privs). It loads the package by path, so it needs nothing else of the kit. On failure it
writes the reason to stderr and exits with PREEXEC_FAILED (71).
"""

import importlib.util
import os
import sys


def load_confine():
    """This folder as a package named `segkit_confine` (the worker side cannot import `grader`)."""
    folder = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "segkit_confine", os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main():
    confine = load_confine()
    try:
        confine.apply(confine.Plan.from_json(sys.argv[1]))
    except Exception as exc:
        os.write(2, f"segkit: the worker could not be confined: {exc}\n".encode())
        os._exit(confine.PREEXEC_FAILED)
    os.execv(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
