"""Seconds each solution notebook takes to run top to bottom in the fast profile, and its costliest cells.

    python bench/notebook_fast.py                 # every assignment
    python bench/notebook_fast.py unet fcn        # some
    python bench/notebook_fast.py --cells 5       # also the 5 costliest cells of each notebook

Executes `solutions/<a>/<a>.ipynb` cell by cell with nbclient as tests/test_notebooks.py does
(SEGKIT_PROFILE=fast, synthetic data in a temporary folder, a fresh kernel per notebook). Prints the
wall seconds (the kernel's start and imports included, which a student pays too) and the kernel's
CPU seconds (user + system, from /proc). On a machine shared with other work the wall time grows
with the load and the CPU time does not: on an idle machine with 2 cores the wall time lies
between half the CPU time (both cores busy throughout) and the CPU time plus the kernel's start.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from grader.assignments import assignment_names  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_notebook(name: str) -> tuple[float, float, list[tuple[float, float, int, str]]]:
    """(wall seconds, kernel CPU seconds, [(cpu s, wall s, cell index, first line)] per code cell) of one run."""
    path = REPO_ROOT / "solutions" / name / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    cells = []
    with tempfile.TemporaryDirectory(prefix=f"nbfast-{name}-") as tmp:
        os.environ["SEGKIT_DATA"] = str(Path(tmp) / "data")
        client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp}})
        started = time.perf_counter()
        with client.setup_kernel():
            pid = client.km.provisioner.pid
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type != "code":
                    continue
                cpu, wall = _cpu_seconds(pid), time.perf_counter()
                client.execute_cell(cell, index)
                first = (cell.source.strip().splitlines() or [""])[0][:70]
                cells.append((_cpu_seconds(pid) - cpu, time.perf_counter() - wall, index, first))
            total_cpu = _cpu_seconds(pid)
        wall = time.perf_counter() - started
    return wall, total_cpu, cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="assignments (default: all)")
    parser.add_argument(
        "--cells", type=int, default=0, help="also print the N cells of each notebook that cost most CPU"
    )
    args = parser.parse_args(argv)
    os.environ.update(
        SEGKIT_PROFILE="fast",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    os.environ.pop("SEGKIT_FAST", None)  # the profile alone decides
    print(f"{'notebook':<10} {'wall s':>7} {'CPU s':>7}")
    for name in args.names or assignment_names():
        wall, cpu, cells = run_notebook(name)
        print(f"{name:<10} {wall:>7.1f} {cpu:>7.1f}", flush=True)
        for cell_cpu, cell_wall, index, first in sorted(cells, reverse=True)[: args.cells]:
            print(f"    cell {index:>3} {cell_wall:>6.1f} {cell_cpu:>6.1f}  {first}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
