"""Seconds each solution notebook takes to run top to bottom in the fast profile, and its costliest cells.

    python bench/notebook_fast.py                 # every assignment
    python bench/notebook_fast.py unet fcn        # some
    python bench/notebook_fast.py --cells 5       # also the 5 slowest cells of each notebook

Executes `solutions/<a>/<a>.ipynb` with nbclient as tests/test_notebooks.py does (SEGKIT_PROFILE=fast,
synthetic data in a temporary folder, a fresh kernel per notebook). The time includes the
kernel's start and its imports, which a student pays too. Cell times come from the execution
timestamps nbclient records in each cell's metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from grader.assignments import assignment_names  # noqa: E402


def _seconds(cell) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(start.rstrip("Z"))).total_seconds()


def run_notebook(name: str) -> tuple[float, list[tuple[float, int, str]]]:
    """(wall seconds, [(seconds, cell index, first line)] for every code cell) of one fast-profile run."""
    path = REPO_ROOT / "solutions" / name / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix=f"nbfast-{name}-") as tmp:
        os.environ["SEGKIT_DATA"] = str(Path(tmp) / "data")
        client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp}})
        started = time.perf_counter()
        client.execute()
        wall = time.perf_counter() - started
    cells = [
        (_seconds(cell), index, (cell.source.strip().splitlines() or [""])[0][:70])
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    ]
    return wall, cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="assignments (default: all)")
    parser.add_argument("--cells", type=int, default=0, help="also print the N slowest cells of each notebook")
    args = parser.parse_args(argv)
    os.environ.update(
        SEGKIT_PROFILE="fast",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    os.environ.pop("SEGKIT_FAST", None)  # the profile alone decides
    print(f"{'notebook':<10} {'seconds':>8}")
    for name in args.names or assignment_names():
        wall, cells = run_notebook(name)
        print(f"{name:<10} {wall:>8.1f}", flush=True)
        for seconds, index, first in sorted(cells, reverse=True)[: args.cells]:
            print(f"    cell {index:>3} {seconds:>6.1f} s  {first}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
