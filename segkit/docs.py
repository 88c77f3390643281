"""`segkit docs`: the figures the docs quote, rendered from the files the benchmarks write.

A benchmark writes what it measured to `docs/figures/<bench>.json` (`write_figures`: the figures, the
command, the date, the commit and the host). A doc holds each quoted passage between markers,

    <!-- figures:start NAME -->
    ... generated text ...
    <!-- figures:end -->

and `segkit docs` rewrites the text between them from the figure files (`--check`: fail instead
when a doc differs, as `make test` does). The passages are the functions in `BLOCKS` below.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = REPO_ROOT / "docs" / "figures"
DOC_FILES = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))
BLOCK = re.compile(r"(<!-- figures:start (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- figures:end -->)", re.S)


def current_commit() -> str:
    """The checkout's short commit (a generated page names the code it was made from), or `unknown`."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def write_figures(bench: str, command: str, figures: dict) -> Path:
    """Record what a benchmark measured in docs/figures/<bench>.json; `segkit docs` then renders the docs."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    record = {
        "bench": bench,
        "command": command,
        "measured": datetime.date.today().isoformat(),
        "commit": current_commit(),
        "host": f"{platform.machine()}, {os.cpu_count()} cores, {'root' if os.geteuid() == 0 else 'ordinary user'}",
        "figures": figures,
    }
    path = FIGURES_DIR / f"{bench}.json"
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"figures -> {path} (`bin/segkit docs` renders them into the docs)")
    return path


def load_figures(folder: Path = FIGURES_DIR) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


def _source(record: dict) -> str:
    return f"`{record['command']}`, {record['measured']}, {record['host']}; docs/figures/{record['bench']}.json"


# -- the passages ------------------------------------------------------------------------------------------
def worker_start(figures: dict[str, dict]) -> str:
    record = figures["grade_speed"]
    start = record["figures"]["worker_start_s"]
    return (
        f"**Cost.** Forked from the template, a worker starts in {start['forked']:.2f} s; from scratch it takes\n"
        f"{start['scratch']:.2f} s, against {start['unsafe']:.2f} s for the same Python start with torch imported and "
        f"no sandbox,\nand each grading slot's template starts once, in {start['template']:.2f} s ({_source(record)}).\n"
    )


def per_result(figures: dict[str, dict]) -> str:
    record = figures["grade_speed"]
    costs = record["figures"]["per_result_core_s"]
    each = ", ".join(f"{c['median']:.1f} s for {name} (max {c['max']:.1f})" for name, c in sorted(costs.items()))
    return (
        "  - Correct and buggy notebooks (CPU per result, median, with the template; "
        f"{_source(record)}):\n    {each}.\n"
    )


def slurm_measured(figures: dict[str, dict]) -> str:
    record = figures["slurm_proof"]
    f = record["figures"]
    n = f["submissions"]
    return (
        "| run | wall time | seconds per submission |\n|---|---|---|\n"
        f"| one machine, `-j {f['jobs']}` | {f['one_machine_s']:.0f} s | {f['one_machine_s'] / n:.1f} |\n"
        f"| Slurm, {f['array_tasks']} array tasks of 1 core ({f['cores']} at a time on {f['cores']} cores), "
        f"submit to end of collect | {f['slurm_s']:.0f} s | {f['slurm_s'] / n:.1f} |\n"
    )


def slurm_estimate(figures: dict[str, dict]) -> str:
    f = figures["slurm_proof"]["figures"]
    n, students = f["submissions"], 4000
    per = f["one_machine_s"] * f["cores"] / n  # core-seconds of wall time per submission at full load
    cpu = f["cpu_s_total"] / n
    node = students * per / 32
    task = students * per / 320 * 1.15
    collect = students / 1000 * f["collect_1000_s"]
    return (
        f"**Estimate for 1,000 students × 4 assignments ({students:,} submissions).** The estimate assumes about\n"
        f"{per:.0f} core-seconds of wall time per submission: the `-j {f['jobs']}` throughput above on {f['cores']} "
        f"cores ({f['one_machine_s']:.0f} s × {f['cores']} / {n}).\nThat is {cpu:.0f} s of CPU (`cpu_s`) plus waiting on "
        "hostile or hanging code; an honest class costs less (the\nper-result figures above).\n\n"
        "| where | estimate |\n|---|---|\n"
        f"| one 32-core node, `-j 32` | {students} × {per:.0f} / 32 ≈ {node:,.0f} s ≈ **{node / 60:.0f} min** "
        f"(CPU floor: {students} × {cpu:.0f} / 32 ≈ {students * cpu / 32 / 60:.0f} min) |\n"
        f"| 10-node array of 32-core nodes, `--shards 10 --cpus-per-task 32` | {students} × {per:.0f} / 320 ≈ "
        f"{students * per / 320 / 60:.1f} min per task; the largest hash slice of 1,000 students is about 15% above the "
        f"mean, so about **{task / 60:.0f} min**. Add queue wait, about 1 min of start-up per task and about "
        f"{collect:.0f} s of collect: about **{task / 60 + 1 + collect / 60:.0f} minutes** once the jobs start |\n"
    )


def confine_cost(figures: dict[str, dict]) -> str:
    record = figures["confine_start"]
    ms = record["figures"]["ms"]
    return (
        f"Confining costs a worker a few milliseconds: on this kit's test host ({record['figures']['host']}, "
        f"`{record['command']}`,\n{record['measured']}), applying the plan took {ms['apply']:.0f} ms; a worker forked "
        f"from a pre-imported torch template\nwas ready in {ms['fork_confined']:.0f} ms confined against "
        f"{ms['fork_plain']:.0f} ms plain; a from-scratch `python -I -S -c pass` took\n{ms['preexec']:.0f} ms with "
        f"the plan applied in `preexec_fn` ({ms['launch']:.0f} ms through `grader/sandbox/launch.py`), "
        f"{ms['plain']:.0f} ms plain\nand {ms['bubblewrap']:.0f} ms in the kit's bubblewrap sandbox (as root, with its "
        "spare-uid staging). Importing torch (seconds)\ndwarfs all of these.\n"
    )


def confine_layers(figures: dict[str, dict]) -> str:
    record = figures["confine_layers"]
    rows = "".join(
        f"| {r['layer']} | {r['caps']} | {r['template_s']:.1f} s | {r['start_ms']:.0f} ms | {r['submission_ms']:.0f} ms |\n"
        for r in record["figures"]["layers"]
    )
    return (
        f"The kit's own workers per layer, in one run (`{record['command']}`, {record['measured']},\n"
        "as root on the same host, user namespaces disabled for the Landlock runs; a submission is a worker's\n"
        "start, one small torch cell, one probe and its stop; medians):\n\n"
        "| layer | caps | slot template start | worker start (fork to ready) | one small submission |\n"
        f"|---|---|---|---|---|\n{rows}"
    )


BLOCKS: dict[str, Callable[[dict[str, dict]], str]] = {
    "worker-start": worker_start,
    "per-result": per_result,
    "slurm-measured": slurm_measured,
    "slurm-estimate": slurm_estimate,
    "confine-cost": confine_cost,
    "confine-layers": confine_layers,
}


@dataclass(frozen=True)
class Rendered:
    path: Path
    text: str
    changed: bool


def render_text(text: str, figures: dict[str, dict]) -> str:
    """`text` with every figures block rewritten; an unknown block name is an error, never left as is."""

    def one(match: re.Match) -> str:
        name = match.group("name")
        if name not in BLOCKS:
            raise KeyError(f"unknown figures block {name!r}; known: {', '.join(BLOCKS)}")
        return match.group(1) + BLOCKS[name](figures) + match.group(4)

    return BLOCK.sub(one, text)


def render_docs(figures: dict[str, dict] | None = None) -> list[Rendered]:
    figures = load_figures() if figures is None else figures
    out = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        new = render_text(text, figures)
        out.append(Rendered(path, new, new != text))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segkit docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a doc differs from its figure files")
    options = parser.parse_args(argv)
    stale = [r for r in render_docs() if r.changed]
    for r in stale:
        where = r.path.relative_to(REPO_ROOT)
        if options.check:
            print(f"{where} quotes figures that differ from docs/figures/; run `bin/segkit docs`", file=sys.stderr)
        else:
            r.path.write_text(r.text, encoding="utf-8")
            print(f"updated {where}")
    return 1 if options.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
