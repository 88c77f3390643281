"""`segkit results` (`make results`): the solution notebooks on real data, and the results card.

    segkit results                       prepare ../shared/data/cmp_facade_base, run the notebooks, write docs/results.md
    segkit results --only fcn            one notebook
    segkit results --report-only         rebuild docs/results.md from the runs already on disk
    segkit results --profile full        the course setting, on a GPU: fills the page's `full` section

Each assignment whose assignment.toml has a `[results] dataset` has its solution notebook executed top to bottom (nbclient, a fresh kernel) in the
`cpu` profile (`SEGKIT_PROFILE=cpu`: the real dataset at reduced size and epochs, sized to
finish on 2 CPU cores), pointed at the dataset this machine has (`SEGKIT_DATASET`). The notebook
itself writes one `ExperimentResult` per experiment and its figures into the runs folder
(`SEGKIT_RUNS`, see `starter.runs`); this module only prepares the data, runs the notebooks and
renders what they left there as Markdown with PNG figures. `[results] not_run` says why a
notebook cannot run on such a machine; `needs_weights` and `published` fill the table. Re-running skips finished experiments
(the notebooks resume from their runs folder); `--fresh` deletes the runs first.

Each profile has its own runs folder (build/results/runs for `cpu`, runs-full for `full`): a `full` run never
resumes from, or shows, a `cpu` result. The page's `full` section lists, per notebook, what a `full` run
measured, or else "unmeasured" beside the original course's published numbers (`[[results.published]]`, each
with its setting), and says why the notebook's other datasets are unmeasured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from grader.assignments import ResultsConfig, assignment_names, load_assignment

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED_CMP = REPO_ROOT.parent / "shared" / "data" / "cmp_facade_base"
BUILD_DIR = REPO_ROOT / "build" / "results"
DOCS_FILE = REPO_ROOT / "docs" / "results.md"
KEPT_NOTE = "(Kept from the previous page: this machine has no runs of this notebook.)"
ESTIMATE_HEADING = "## Time per epoch in the full profile: estimated, not measured"
FIGURES_DIR = REPO_ROOT / "docs" / "results"
FULL_HEADING = "## The course setting (`full` profile): published numbers until a GPU run replaces them"
NO_FULL_RUN = "unmeasured: no `full` run of the kit yet"
# Why the results machine (offline, 2 CPU cores, CMP Facade base only) has measured nothing on a dataset.
UNMEASURED_DATASETS = {
    "stanford_background": "the results machine is offline and Stanford Background downloads from Stanford's server "
    "(`python -m data_scripts.stanford_background`); the kit's runs use CMP Facade instead",
    "kitti": "KITTI needs a registration and a download by hand (`data_scripts/kitti.py`)",
    "landcover": "DeepGlobe Land Cover needs an account (CodaLab or Kaggle) and a download by hand "
    "(`data_scripts/landcover.py`)",
    "vaihingen": "ISPRS Vaihingen needs a registration and a download by hand (`data_scripts/vaihingen.py`)",
}
# A notebook that has not finished after this long is stopped (its finished experiments stay).
CELL_TIMEOUT_S = 3600


def _configured() -> list[tuple[str, ResultsConfig]]:
    """Every assignment with a [results] table in its assignment.toml, in name order."""
    return [
        (name, config.results)
        for name in assignment_names()
        if (config := load_assignment(name).config).results != ResultsConfig()
    ]


def runs_root_for(profile: str, build_dir: Path | None = None) -> Path:
    """The runs folder of one profile: `cpu` runs in build/results/runs, every other profile in runs-<profile>."""
    build_dir = BUILD_DIR if build_dir is None else build_dir
    return build_dir / ("runs" if profile == "cpu" else f"runs-{profile}")


def wall_file_for(profile: str) -> Path:
    """Where the notebooks' wall times of one profile's last runs are kept."""
    return BUILD_DIR / ("wall-seconds.json" if profile == "cpu" else f"wall-seconds-{profile}.json")


def prepare_data(shared_cmp: Path, data_root: Path) -> Path:
    """Prepare CMP Facade with the kit's own script, as if the base zip had just been unpacked.

    Inputs: shared_cmp: folder holding base/ (the official archive unpacked); data_root: output root.
    Returns: data_root (holding cmp_facade/).
    """
    from data_scripts.cmp_facade import prepare_cmp_facade

    if not (shared_cmp / "base").is_dir():
        raise SystemExit(
            f"segkit results: no CMP Facade base set at {shared_cmp} (expected {shared_cmp}/base/cmp_b0001.jpg ...).\n"
            "Unpack CMP_facade_DB_base.zip there, or pass --shared FOLDER."
        )
    prepare_cmp_facade(data_root, unpacked_dirs=[shared_cmp], progress=True)
    return data_root


def execute_notebook(source: Path, executed: Path, env: dict[str, str], workdir: Path) -> float:
    """Run a notebook in a fresh kernel with `env` added; save the executed copy.

    Returns: wall seconds. Raises: nbclient's CellExecutionError when a cell fails (the executed
    copy is saved first, so the traceback can be read there).
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(source, as_version=4)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    started = time.perf_counter()
    try:
        client = NotebookClient(
            notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        executed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, executed)
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path.relative_to(DOCS_FILE.parent).as_posix()


def _figures_for(assignment: str, results: dict, runs_root: Path, classes: Sequence[str]) -> list[str]:
    """Draw the figures of one notebook's experiments; Returns: Markdown lines embedding them."""
    from starter.runs import RunStore
    from starter.viz import plot_confusion, plot_history, plot_iou_bars

    out = FIGURES_DIR / assignment
    lines: list[str] = []
    trained = {name: r.history for name, r in results.items() if r.history and r.history.get("train_loss")}
    if trained:
        lines.append(
            f"![{assignment}: loss and validation mIoU per epoch]({_save(plot_history(trained), out / 'curves.png')})"
        )
    store = RunStore(runs_root / assignment)
    for name, result in results.items():
        experiment_dir = store.experiment_dir(name)
        slug = experiment_dir.name
        if result.per_class_iou:  # instance experiments report AP and counts instead (in `extra`)
            ious = [result.per_class_iou.get(c, float("nan")) for c in classes]
            ious = [float("nan") if v is None else v for v in ious]
            bars = plot_iou_bars(ious, classes, title=f"{name}: test IoU per class")
            lines.append(f"![{name}: test IoU per class]({_save(bars, out / f'{slug}-iou.png')})")
        if result.confusion:
            conf = plot_confusion(result.confusion, classes)
            lines.append(f"![{name}: confusion matrix]({_save(conf, out / f'{slug}-confusion.png')})")
        for png in sorted(experiment_dir.glob("*.png")):
            target = out / f"{slug}-{png.name}"
            shutil.copyfile(png, target)
            lines.append(f"![{name}: {png.stem}]({target.relative_to(DOCS_FILE.parent).as_posix()})")
    return lines


def page_sections(page: str) -> dict[str, str]:
    """The `## ` sections of a results page by heading line, each with its body (up to the next heading)."""
    sections: dict[str, str] = {}
    heading = None
    for line in page.splitlines(keepends=True):
        if line.startswith("## "):
            heading = line.rstrip("\n")
            sections[heading] = ""
        if heading is not None:
            sections[heading] += line
    return sections


def _table_names(section: str) -> list[str]:
    """The experiment names of a section's first results table (its rows' first cells)."""
    names, in_table = [], False
    for line in section.splitlines():
        if line.startswith("| experiment |"):
            in_table = True
        elif in_table and line.startswith("|---"):
            continue
        elif in_table and line.startswith("| "):
            names.append(line.split("|")[1].strip())
        elif in_table:
            break
    return names


def _subsections(section: str) -> dict[str, str]:
    """The `### ` subsections of a section by assignment name (the heading's first word after ###)."""
    found: dict[str, str] = {}
    name = None
    for line in section.splitlines(keepends=True):
        if line.startswith("### "):
            name = line[4:].split()[0]
            found[name] = ""
        if name is not None:
            found[name] += line
    return found


def _measured_full(result) -> str:
    epochs = f"{result.epochs_run}/{result.epochs_planned}" if result.epochs_planned else str(result.epochs_run)
    return (
        f"measured: mIoU {_number(result.miou)}, pixel accuracy {_number(result.pixel_acc)}, {epochs} epochs, "
        f"{_number(result.seconds_per_epoch, 0)} s per epoch ({result.image_size})"
    )


FULL_MEASURED_NOTE = "Measured by `bin/segkit results --profile full`"


def render_full_section(
    full_runs_root: Path,
    wall_seconds: dict[str, float],
    environment: str,
    experiments: dict[str, list[str]],
    kept: str = "",
) -> list[str]:
    """The page's `full` section: per notebook, what a `full` run measured, else "unmeasured" beside the
    original course's published numbers with their setting, and why its other datasets are unmeasured.

    Inputs: the `full` runs folder, the `full` notebooks' wall times, the machine, each notebook's experiment
    names (from its `cpu` runs or section), and the previous page's `full` section (a notebook measured on
    another machine keeps its measured subsection).
    Returns: Markdown lines.
    """
    from starter.runs import RunStore

    previous = _subsections(kept)
    lines = [
        FULL_HEADING,
        "",
        "The `full` profile is the course setting: every training image at the notebook's full size and epochs, on",
        'a GPU. Where a row says "unmeasured", no `full` run of the kit has been made; beside it stand the numbers the',
        "original course published, each with the setting it was measured in (its dataset, split, epochs, optimiser",
        "and weights, which differ from the kit's: for orientation, not a like-for-like comparison; the notebooks'",
        '"What to expect" tables show the same). On a machine with a GPU and the CMP Facade base set,',
        "`bin/segkit results --profile full` runs every notebook in the `full` profile (its own runs folder: a `cpu`",
        'result is never reused) and replaces "unmeasured" with what it measured.',
        "",
    ]
    for assignment, config in _configured():
        store_dir = full_runs_root / assignment
        results = RunStore(store_dir).results() if store_dir.is_dir() else {}
        if not results and FULL_MEASURED_NOTE in previous.get(assignment, ""):
            section = "\n".join(line for line in previous[assignment].splitlines() if line != KEPT_NOTE).rstrip()
            lines += [*section.splitlines(), "", KEPT_NOTE, ""]
            continue
        spec = load_assignment(assignment).config
        course_data = ", ".join(spec.datasets) or "–"
        if config.dataset is None:
            lines += [f"### {assignment} (the course's data: {course_data})", "", f"Unmeasured: {config.not_run}.", ""]
            continue
        lines += [f"### {assignment} (the course's data: {course_data}; the kit's runs: {config.dataset})", ""]
        if results:
            wall = wall_seconds.get(assignment)
            took = f" in {wall / 60:.0f} min" if wall is not None else ""
            lines += [f"{FULL_MEASURED_NOTE}{took} on {environment}.", ""]
        published = {p.experiment: p for p in config.published}
        names = list(dict.fromkeys([*results, *experiments.get(assignment, []), *config.needs_weights, *published]))
        lines += [
            f"| experiment | `full` profile, the kit, {config.dataset} | published by the original course (its setting) |",
            "|---|---|---|",
        ]
        for name in names:
            kit = _measured_full(results[name]) if name in results else NO_FULL_RUN
            seeds = f"{published[name].value:.3f} ({published[name].what})" if name in published else "–"
            lines.append(f"| {name} | {kit} | {seeds} |")
        others = [d for d in spec.datasets if d != config.dataset and d in UNMEASURED_DATASETS]
        lines.append("")
        if others:
            lines += [f"- On {d}: unmeasured in every profile: {UNMEASURED_DATASETS[d]}." for d in others] + [""]
    return lines


def render_report(
    runs_root: Path,
    wall_seconds: dict[str, float],
    environment: str,
    previous: str = "",
    full_wall_seconds: dict[str, float] | None = None,
) -> str:
    """docs/results.md from the runs folder. Inputs: runs root, notebook wall times, a description of the machine,
    and the previous page: a notebook with no runs on this machine (`--only` another one, a fresh clone) keeps
    its section from there instead of losing it, and so does the estimate section. The `full` section reads the
    `full` runs next to `runs_root` (runs-full) with their wall times, `full_wall_seconds`."""
    kept = page_sections(previous)
    experiments: dict[str, list[str]] = {}
    import torch

    from starter.data import dataset_spec
    from starter.runs import RunStore

    lines = [
        "# Results on real data",
        "",
        "Made by `make results` (`bin/segkit results`): the solution notebooks executed top to bottom in the `cpu`",
        "profile (`SEGKIT_PROFILE=cpu`: real data at reduced image size, training-set size and epochs, so that each",
        "notebook finishes on 2 CPU cores) on the real data this machine has, the CMP Facade **base** set from",
        "`../shared/data/cmp_facade_base`, prepared by the kit's own script. Without the extended set the course's",
        "split rule (first 500 train, 30 val, rest test) would leave no val/test images, so base-only data is split",
        "by sorted name: 288 train, 30 val, 60 test (`CMP_BASE_ONLY_SPLIT_SIZES`). Every number below is on those",
        "60 test images. ImageNet weights cannot be downloaded on this machine: the rows that need them are listed",
        "as not run, to be filled in on a machine that has them. The published values of the original course",
        'material ("seeds") were measured on the full CMP split after full-length training with ImageNet weights;',
        "they are printed beside ours for orientation, not as a like-for-like comparison.",
        "",
        "Reading these numbers: the `cpu` profile trains from scratch with Adam for a few hundred steps. The U-Net,",
        "the ResNet-18 FCN and the instance notebook's networks end clearly above the per-pixel prior (a network",
        "predicting facade everywhere scores mIoU 0.039); the VGG16 FCNs from scratch get a token budget and stay at",
        "the prior, and the orderings that need ImageNet weights belong to the `full` profile on a GPU (the last",
        "section, the course setting). Times are those of the machine that ran `make results`, shared or not.",
        "",
        f"Machine: {environment}",
        "",
    ]
    not_run = []
    for assignment, config in _configured():
        if config.dataset is None:
            not_run.append((assignment, config.not_run))
            continue
        if config.needs_gpu and not torch.cuda.is_available():
            not_run.append((f"{assignment}, in part", config.needs_gpu))
        published = {p.experiment: p for p in config.published}
        store_dir = runs_root / assignment
        results = RunStore(store_dir).results() if store_dir.is_dir() else {}
        wall = wall_seconds.get(assignment)
        heading = f"## {assignment}: solutions/{assignment}/{assignment}.ipynb on {config.dataset}"
        experiments[assignment] = list(results) or _table_names(kept.get(heading, ""))
        if not results and heading in kept:  # measured on another machine or in an earlier run: keep it, say so
            section = "\n".join(line for line in kept[heading].splitlines() if line != KEPT_NOTE).rstrip()
            lines += [*section.splitlines(), "", KEPT_NOTE, ""]
            continue
        lines += [heading, ""]
        if wall is not None:
            lines += [
                f"Wall time of the last `make results` run of this notebook: {wall / 60:.1f} min (experiments finished in earlier runs are skipped, not re-run).",
                "",
            ]
        if not results:
            lines += ["No finished experiment in the runs folder: run `make results`.", ""]
            continue
        lines += [
            "| experiment | data | image size | epochs | s / epoch | pixel acc | mIoU | published (seeds) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in results.items():
            seeds = f"{published[name].value:.3f} ({published[name].what})" if name in published else "–"
            epochs = f"{r.epochs_run}/{r.epochs_planned}" if r.epochs_planned else str(r.epochs_run)
            lines.append(
                f"| {name} | {r.data} | {r.image_size} | {epochs} | {_number(r.seconds_per_epoch, 0)} "
                f"| {_number(r.pixel_acc)} | {_number(r.miou)} | {seeds} |"
            )
        for name in config.needs_weights:
            if name not in results:
                seeds = f"{published[name].value:.3f} ({published[name].what})" if name in published else "–"
                lines.append(f"| {name} | needs ImageNet weights: not run here | | | | | | {seeds} |")
        # Only now: a notebook kept from the previous page needs no prepared data on this machine.
        classes = dataset_spec(config.dataset, runs_root.parent / "data").classes
        with_iou = {name: r for name, r in results.items() if r.per_class_iou}
        if with_iou:
            lines += ["", "Test IoU per class:", ""]
            lines.append("| experiment | " + " | ".join(classes) + " |")
            lines.append("|---" * (len(classes) + 1) + "|")
            for name, r in with_iou.items():
                cells = [_number(r.per_class_iou.get(c)) for c in classes]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        # Summary metrics only ("mAP"); per-class entries ("AP sky") stay in the runs folder.
        extra_keys = sorted({k for r in results.values() for k in r.extra if " " not in k})
        if extra_keys:
            lines += ["", "| experiment | " + " | ".join(extra_keys) + " |", "|---" * (len(extra_keys) + 1) + "|"]
            for name, r in results.items():
                lines.append(f"| {name} | " + " | ".join(_number(r.extra.get(k)) for k in extra_keys) + " |")
        lines += ["", *_figures_for(assignment, results, runs_root, classes), ""]
    estimate_file = BUILD_DIR / "colab-estimate.json"
    if estimate_file.is_file():
        estimate = json.loads(estimate_file.read_text())
        lines += [
            ESTIMATE_HEADING,
            "",
            "No GPU was lent to the session that made this page, so the full profile's time per epoch is an",
            "estimate (`python bench/colab_estimate.py`): training FLOPs per image of the solution's model",
            "(torch's FLOP counter), the CPU's effective rate from the epochs measured above, and an assumed",
            f"{estimate['t4_effective_tflops']:.0f} TFLOP/s effective for a Colab T4 (about 10 % of its float16",
            "tensor-core peak). Expect the truth within a factor of 2. Full epoch = 500 training + 30 validation",
            "images at the full profile's size. Compute only: decoding and resizing the images on Colab's CPUs",
            "comes on top and is not estimated (it dominates for the small ResNet-18 models).",
            "",
            "| experiment | GFLOP / training image (full size) | CPU GFLOP/s (measured) | full epoch, 2 CPU cores | full epoch, Colab T4 |",
            "|---|---|---|---|---|",
        ]
        for name, row in estimate["rows"].items():
            lines.append(
                f"| {name} | {row['gflop_per_training_image_full']:.0f} | {row['cpu_effective_gflops']:.0f} "
                f"| ~{row['cpu_seconds_per_full_epoch_estimated'] / 60:.0f} min "
                f"| ~{row['t4_seconds_per_full_epoch_estimated']:.0f} s |"
            )
        lines.append("")
    elif ESTIMATE_HEADING in kept:
        lines += [*kept[ESTIMATE_HEADING].rstrip("\n").splitlines(), ""]
    lines += ["## Not run here", ""]
    lines += [f"- **{name}**: {why}" for name, why in not_run]
    lines.append("")
    full_runs = runs_root_for("full", runs_root.parent)
    lines += render_full_section(
        full_runs, full_wall_seconds or {}, environment, experiments, kept.get(FULL_HEADING, "")
    )
    return "\n".join(lines)


def _environment_line() -> str:
    import platform

    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), no GPU"
        if not torch.cuda.is_available()
        else torch.cuda.get_device_name()
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segkit results", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED_CMP, help="unpacked CMP Facade base (holds base/)"
    )
    parser.add_argument("--only", action="append", help="run only this notebook (repeatable)")
    parser.add_argument(
        "--profile",
        default="cpu",
        choices=("cpu", "full"),
        help="run profile (default cpu; full: the course setting on a GPU, its own runs, the page's full section)",
    )
    parser.add_argument("--report-only", action="store_true", help="only rebuild docs/results.md from the runs on disk")
    parser.add_argument("--fresh", action="store_true", help="delete earlier runs first (default: resume them)")
    options = parser.parse_args(argv)

    data_root, runs_root = BUILD_DIR / "data", runs_root_for(options.profile)
    wall_file = wall_file_for(options.profile)

    wall = json.loads(wall_file.read_text()) if wall_file.is_file() else {}
    if not options.report_only:
        prepare_data(options.shared, data_root)
        for assignment, config in _configured():
            if config.dataset is None or (options.only and assignment not in options.only):
                continue
            if options.fresh:
                shutil.rmtree(runs_root / assignment, ignore_errors=True)
            env = {
                "SEGKIT_PROFILE": options.profile,
                "SEGKIT_DATA": str(data_root),
                "SEGKIT_DATASET": config.dataset,
                "SEGKIT_RUNS": str(runs_root),  # the notebook adds its own assignment folder
                "PYTHONPATH": str(REPO_ROOT),
                "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            }
            os.environ.pop("SEGKIT_FAST", None)
            print(f">> {assignment}: executing the solution notebook on {config.dataset} ({options.profile} profile)")
            source = REPO_ROOT / "solutions" / assignment / f"{assignment}.ipynb"
            workdir = BUILD_DIR / "work" / assignment
            workdir.mkdir(parents=True, exist_ok=True)
            seconds = execute_notebook(source, BUILD_DIR / f"{assignment}.executed.ipynb", env, workdir)
            wall[assignment] = seconds
            wall_file.parent.mkdir(parents=True, exist_ok=True)
            wall_file.write_text(json.dumps(wall, indent=1))
            print(f">> {assignment}: {seconds / 60:.1f} min")
    import matplotlib

    matplotlib.use("Agg")
    previous = DOCS_FILE.read_text(encoding="utf-8") if DOCS_FILE.is_file() else ""
    walls = {p: json.loads(f.read_text()) if (f := wall_file_for(p)).is_file() else {} for p in ("cpu", "full")}
    page = render_report(runs_root_for("cpu"), walls["cpu"], _environment_line(), previous, walls["full"])
    DOCS_FILE.write_text(page)
    print(f"wrote {DOCS_FILE.relative_to(REPO_ROOT)} and {FIGURES_DIR.relative_to(REPO_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
