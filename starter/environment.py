"""Set a student notebook up wherever it runs: Google Colab or a GPU server.

The first cell of every student notebook calls ``setup_notebook("<assignment>")``:

* **Colab** (``google.colab`` is loaded or importable): mounts Google Drive, installs this
  kit from its folder in Drive with ``pip install --no-deps -e <kit>`` (once per Colab
  session; ``--no-deps`` so Colab's own torch/torchvision are never replaced), points
  prepares the assignment's data once in ``<kit>/data`` in Drive (skipped in fast mode), then
  copies it once per session to the VM's local disk (``/content/segkit-data``) and points
  ``$SEGKIT_DATA`` there: reading thousands of small files from Drive is many times slower than
  from local disk. The kit folder defaults to ``/content/drive/MyDrive/segkit``;
  ``$SEGKIT_DRIVE_DIR`` or the ``drive_dir`` argument change it.
* **GPU server / laptop**: uses the active conda environment or virtual environment as it is
  (installs nothing) and says how to prepare the data when it is missing.
* **Grading** (``$SEGKIT_GRADING=1``, set by the grader's sandboxed worker): does nothing.

Either way it prints the device, the library versions and where the data is, seeds every random
generator and returns what the notebook's cells need: ``FAST, device = setup_notebook("cam")``.

On Colab ``starter`` is not importable before the kit is installed, so the notebook cell
bootstraps itself in a few lines first (mount Drive, ``sys.path.insert(0, kit)``) and then calls
this module, which does the rest. Where the folder does not hold the kit, the cell's import of
this module fails, and a comment on that line says what to do.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starter.common import env_flag, fast_mode
from starter.constants import ENV_DATA

ENV_DRIVE_DIR = "SEGKIT_DRIVE_DIR"  # kit folder in Google Drive (Colab)
ENV_GRADING = "SEGKIT_GRADING"  # "1" inside the grader's worker: setup does nothing
DRIVE_MOUNT_POINT = "/content/drive"
DEFAULT_DRIVE_DIR = "/content/drive/MyDrive/segkit"
# The Colab VM's own disk: fast, but emptied with every new session. Only used when its parent
# folder exists (a real Colab VM), so a simulated Colab elsewhere keeps reading from "Drive".
LOCAL_DATA_DIR = Path("/content/segkit-data")
_COPY_CHUNK = 1024 * 1024
DISTRIBUTION = "segkit-starter"  # the pip name of this kit (pyproject.toml)
KIT_ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS_FILE = Path(__file__).resolve().parent / "assignments.json"
NOTEBOOK_SEED = 0  # every notebook starts from the same random state

# Modules a server needs; Colab has them all preinstalled.
REQUIRED_MODULES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "sklearn": "scikit-learn",
}


@dataclass(frozen=True)
class DatasetSetup:
    """How to get one dataset of ``data_scripts`` ready under a data root.

    ``prepare`` is ``"module:function"`` called as ``function(root, progress=...)``, or None for
    data that cannot be downloaded automatically: ``manual`` then says what to do (``{root}`` is
    filled in), and ``from_archives``, ``"module:function"`` called as
    ``function(root, <root>/downloads/<name>, progress=...)``, unpacks the archives the student
    put there by hand.
    """

    name: str
    prepare: str | None
    manual: str = ""
    from_archives: str | None = None


DATASETS = {
    "cmp_facade": DatasetSetup("cmp_facade", "data_scripts.cmp_facade:prepare_cmp_facade"),
    "stanford_background": DatasetSetup(
        "stanford_background", "data_scripts.stanford_background:prepare_stanford_background"
    ),
    "cam_samples": DatasetSetup("cam_samples", "data_scripts.cam_samples:prepare_cam_samples"),
    "vaihingen": DatasetSetup(
        "vaihingen",
        None,
        manual=(
            "ISPRS Vaihingen needs a free registration and cannot be downloaded automatically: request it at "
            "https://www.isprs.org/education/benchmarks/UrbanSemLab/2d-sem-label-vaihingen.aspx, put "
            "ISPRS_semantic_labeling_Vaihingen.zip (and ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip) "
            "into {root}/downloads/vaihingen and run this cell again (or: python -m data_scripts.vaihingen "
            "--root {root} --archives {root}/downloads/vaihingen)."
        ),
        from_archives="data_scripts.vaihingen:prepare_vaihingen",
    ),
}


@dataclass
class NotebookEnvironment:
    """What ``setup_notebook`` found and did (also useful in a bug report).

    Unpacks as ``FAST, device = setup_notebook(...)``: the two values every notebook's cells use.
    """

    assignment: str
    kind: str  # "colab", "server" or "grading"
    kit_dir: Path | None = None
    data_root: Path | None = None
    installed: bool = False  # pip install -e ran in this call
    datasets: dict[str, str] = field(
        default_factory=dict
    )  # name -> "ready", "prepared", "skipped (...)", "missing: ..."
    messages: list[str] = field(default_factory=list)
    fast: bool = False  # the "fast" profile: synthetic data, random weights, a few steps (CI, try-outs)
    device: Any = None  # the torch.device the notebook computes on (get_device())

    def __iter__(self) -> Iterator[Any]:
        """``FAST, device = setup_notebook(...)``."""
        return iter((self.fast, self.device))


def is_grading() -> bool:
    """True inside the grader's sandboxed worker ($SEGKIT_GRADING=1)."""
    return env_flag(ENV_GRADING)


def in_colab() -> bool:
    """True in a Google Colab runtime (its `google.colab` package is loaded or importable)."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # no `google` package at all
        return False


def load_assignments(path: Path = ASSIGNMENTS_FILE) -> dict:
    """The released assignments: {name: {"graded": [...], "setup": [...], "data": [...], ...}}.

    Written by ``python -m segkit.build.release --manifest`` from the solution notebooks; shipped in
    the student bundle so that ``starter.submit`` knows every graded cell without solutions/.
    """
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))["assignments"]


def resolve_drive_dir(drive_dir: str | os.PathLike | None = None) -> Path:
    """The kit folder in Drive: the argument, else $SEGKIT_DRIVE_DIR, else /content/drive/MyDrive/segkit."""
    value = str(drive_dir) if drive_dir else os.environ.get(ENV_DRIVE_DIR, "").strip() or DEFAULT_DRIVE_DIR
    return Path(value).expanduser()


def mount_drive(drive_dir: Path) -> None:
    """Mount Google Drive unless the kit folder is already reachable (mounted earlier, or not on Drive)."""
    if drive_dir.is_dir():
        return
    from google.colab import drive  # only exists on Colab

    drive.mount(DRIVE_MOUNT_POINT)


def _installed_from(distribution: str = DISTRIBUTION) -> Path | None:
    """Folder an editable install of the kit points at (None when not installed that way)."""
    try:
        direct_url = importlib.metadata.distribution(distribution).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not direct_url:
        return None
    url = json.loads(direct_url).get("url", "")
    return Path(unquote(url[len("file://") :])) if url.startswith("file://") else None


def install_kit(kit_dir: Path, *, runner=None) -> bool:
    """``pip install --no-deps -e kit_dir`` unless that install is already in place; True when pip ran.

    ``--no-deps``: Colab's torch/torchvision (and everything else it preinstalls) stay as they are.
    The install is what lets ``!python -m starter.submit`` and DataLoader workers import the kit.
    """
    current = _installed_from()
    if current is not None and current.resolve() == kit_dir.resolve():
        return False
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(kit_dir)]
    completed = (runner or subprocess.run)(command, capture_output=True, text=True)
    if completed.returncode != 0:
        # Not fatal: this kernel already imports the kit from sys.path; only subprocesses miss it.
        print(
            f"warning: `{' '.join(command[2:])}` failed; `!python -m starter...` commands may not find the kit:\n"
            f"{(completed.stderr or '')[-1500:]}",
            file=sys.stderr,
        )
        return False
    importlib.invalidate_caches()
    return True


def dataset_ready(root: Path, name: str) -> bool:
    """A prepared dataset has ``<root>/<name>/meta.json`` (every data script writes it last)."""
    return (root / name / "meta.json").is_file()


def prepare_dataset(name: str, root: Path, *, progress: bool = True) -> str:
    """Prepare one dataset under ``root`` unless it is there; returns its status for the summary."""
    if dataset_ready(root, name):
        return "ready"
    spec = DATASETS.get(name)
    if spec is None:
        return "ready (nothing to download)"
    archives = root / "downloads" / name
    if spec.prepare is None:
        if spec.from_archives is None or not (archives.is_dir() and any(archives.glob("*.zip"))):
            return "missing: " + spec.manual.format(root=root)
        # Archives the student downloaded by hand (after registering) are there: unpack them.
        module_name, function_name = spec.from_archives.split(":")
        arguments = (root, archives)
    else:
        module_name, function_name = spec.prepare.split(":")
        arguments = (root,)
    print(f"Preparing {name} in {root} (once; later runs reuse it) ...")
    try:
        prepare = getattr(importlib.import_module(module_name), function_name)
        prepare(*arguments, progress=progress)
    except Exception as error:  # a failed download must not stop the imports below
        return (
            f"missing: could not prepare it ({type(error).__name__}: {error}). Run this cell again to resume, "
            f"or: python -m {module_name} --root {root}" + (f" --archives {archives}" if spec.prepare is None else "")
        )
    return "prepared"


def _manifest(folder: Path) -> dict[str, int]:
    """Every file under `folder` (relative POSIX path -> size in bytes); empty when it does not exist."""
    if not folder.is_dir():
        return {}
    return {path.relative_to(folder).as_posix(): path.stat().st_size for path in folder.rglob("*") if path.is_file()}


def copy_to_local(src: Path, dst: Path, *, progress: bool = True) -> Path:
    """Copy a prepared dataset folder to local disk, once.

    Skipped when `dst` already holds a complete copy (the same files with the same sizes). The copy
    goes into a temporary folder next to `dst` that is renamed into place at the end, so an
    interrupted copy never looks complete; an incomplete `dst` is replaced.

    Inputs:
        src: the prepared dataset, e.g. ``<kit>/data/cmp_facade`` in Drive.
        dst: where it goes, e.g. ``/content/segkit-data/cmp_facade``.
        progress: a tqdm bar over the bytes copied.
    Returns:
        dst.
    """
    src, dst = Path(src), Path(dst)
    wanted = _manifest(src)
    if not wanted:
        raise FileNotFoundError(f"nothing to copy: {src} holds no files")
    if _manifest(dst) == wanted:
        return dst
    temporary = dst.parent / f".{dst.name}.partial-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _copy_files(src, temporary, sorted(wanted), total=sum(wanted.values()), progress=progress)
        if _manifest(temporary) != wanted:  # src changed while copying: do not call that complete
            raise OSError(f"{src} changed while it was copied to {dst}; run again")
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(temporary, dst)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)  # only left when something failed
    return dst


def _copy_files(src: Path, dst: Path, relative_paths: list[str], *, total: int, progress: bool) -> None:
    """Copy the listed files from src to dst in chunks, with a tqdm bar over `total` bytes."""
    from tqdm.auto import tqdm  # imported here: the setup cell must not need it before this point

    with tqdm(total=total, unit="B", unit_scale=True, desc=f"copy {src.name}", disable=not progress) as bar:
        for relative in relative_paths:
            target = dst / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(src / relative, "rb") as reader, open(target, "wb") as writer:
                while chunk := reader.read(_COPY_CHUNK):
                    writer.write(chunk)
                    bar.update(len(chunk))


def _copy_datasets_to_local(names: list[str], drive_root: Path, local_root: Path, *, progress: bool) -> str | None:
    """Copy every named dataset from Drive to local disk.

    Returns:
        None when all were copied (or already there), else why not (the notebook then reads Drive).
    """
    try:
        for name in names:
            copy_to_local(drive_root / name, local_root / name, progress=progress)
    except OSError as error:  # e.g. a full local disk: reading from Drive is slower but works
        return f"could not copy {name} to local disk ({type(error).__name__}: {error}); reading it from Drive"
    return None


def _python_environment() -> str:
    if os.environ.get("CONDA_DEFAULT_ENV"):
        return f"conda environment {os.environ['CONDA_DEFAULT_ENV']!r} ({sys.prefix})"
    if sys.prefix != sys.base_prefix:
        return f"virtual environment {sys.prefix}"
    return f"Python at {sys.prefix}"


def missing_modules() -> list[str]:
    """pip names of required packages that cannot be imported here (cheap: no import is run)."""
    return [package for module, package in REQUIRED_MODULES.items() if importlib.util.find_spec(module) is None]


def _versions_line() -> str:
    versions = []
    for module in ("numpy", "cv2", "matplotlib"):
        try:
            versions.append(f"{module} {importlib.import_module(module).__version__}")
        except Exception:  # a broken optional library must not break setup
            versions.append(f"{module} missing")
    return "libraries    " + ", ".join(versions)


def setup_notebook(
    assignment: str,
    *,
    drive_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    install: bool = True,
    quiet: bool = False,
    runner=None,
    seed: int = NOTEBOOK_SEED,
) -> NotebookEnvironment:
    """Get a notebook ready to run here; print the device, versions and data location; seed the generators.

    Inputs:
        assignment: the notebook's assignment, e.g. "fcn" (picks the data to prepare).
        drive_dir: Colab only: the kit's folder in Google Drive (default $SEGKIT_DRIVE_DIR or
            /content/drive/MyDrive/segkit).
        download: prepare missing data now. None (default): on Colab yes, on a server no (the
            command to run is printed instead). Never in fast mode.
        install: Colab only: ``pip install --no-deps -e`` the kit if it is not installed yet.
        quiet: print nothing (the returned object still says everything).
        runner: runs the pip command (default subprocess.run; tests pass a fake).
        seed: Python's, NumPy's and PyTorch's generators are seeded with it (also when grading).
    Returns:
        NotebookEnvironment describing what was found and done, with ``fast`` (fast mode is on) and
        ``device`` (where to compute); it unpacks as ``FAST, device = setup_notebook(...)``.
    Raises:
        FileNotFoundError: on Colab, the Drive folder does not hold the kit (says what to upload).
    """
    if is_grading():  # the grader's worker: no Drive, no install, no data; the cells still need these
        return _ready_to_compute(NotebookEnvironment(assignment, "grading"), seed)
    colab = in_colab()
    fast = fast_mode()
    env = NotebookEnvironment(assignment, "colab" if colab else "server", kit_dir=KIT_ROOT)
    copy_local = False  # Colab only: read the data from a copy on the VM's local disk
    if colab:
        kit_dir = resolve_drive_dir(drive_dir)
        mount_drive(kit_dir)
        if not (kit_dir / "starter").is_dir():
            raise FileNotFoundError(
                f"{kit_dir} does not hold the course kit (no starter/ folder): upload the unzipped "
                f"student bundle there (see STUDENT_README.md), or set SEGKIT_DIR in the setup cell "
                f"(or ${ENV_DRIVE_DIR})"
            )
        env.kit_dir = kit_dir
        if str(kit_dir) not in sys.path:
            sys.path.insert(0, str(kit_dir))
        if install:
            env.installed = install_kit(kit_dir, runner=runner)
        # Data is prepared in Drive so it survives the Colab session; $SEGKIT_DATA set by the student
        # wins (our own earlier switch to local disk does not count as theirs).
        configured = os.environ.get(ENV_DATA, "").strip()
        copy_local = not configured or Path(configured) == LOCAL_DATA_DIR
        if copy_local:
            os.environ[ENV_DATA] = str(kit_dir / "data")
    else:
        missing = missing_modules()
        if missing:
            env.messages.append(
                f"missing packages: {', '.join(missing)}. Create the environment with "
                "`conda env create -f environment.yml && conda activate segkit` or "
                "`pip install -r requirements.txt` (then `pip install -e .` in the kit's folder)"
            )

    from starter.common import data_root

    env.data_root = data_root()
    datasets = [name for name in load_assignments().get(assignment, {}).get("data", []) if name in DATASETS]
    want_download = colab if download is None else download
    for name in datasets:
        if fast:
            env.datasets[name] = "skipped (fast mode uses synthetic data)"
        elif dataset_ready(env.data_root, name):
            env.datasets[name] = "ready"
        elif want_download:
            env.datasets[name] = prepare_dataset(name, env.data_root, progress=not quiet)
        else:
            spec = DATASETS[name]
            env.datasets[name] = (
                "missing: " + spec.manual.format(root=env.data_root)
                if spec.prepare is None
                else f"missing: prepare it once with `python -m data_scripts.{name} --root {env.data_root}`"
            )
    if colab and copy_local and not fast:
        _use_local_copy(env, datasets, progress=not quiet)
    if not quiet:
        print(describe(env))
    return _ready_to_compute(env, seed)


def _ready_to_compute(env: NotebookEnvironment, seed: int) -> NotebookEnvironment:
    """Fill in env.fast and env.device and seed Python, NumPy and PyTorch; returns env."""
    from starter.config import get_device, seed_everything  # imports torch: only once the kit is set up

    env.fast = fast_mode()
    env.device = get_device()
    seed_everything(seed)
    return env


def _use_local_copy(env: NotebookEnvironment, datasets: list[str], *, progress: bool) -> None:
    """Colab: copy the assignment's prepared datasets from Drive to LOCAL_DATA_DIR and point $SEGKIT_DATA there.

    Only when every dataset is ready (a missing one must be fixed in Drive first) and the local disk
    exists; otherwise the notebook keeps reading from Drive.
    """
    ready = [name for name in datasets if dataset_ready(env.data_root, name)]
    if not ready or len(ready) != len(datasets) or not LOCAL_DATA_DIR.parent.is_dir():
        return
    problem = _copy_datasets_to_local(ready, env.data_root, LOCAL_DATA_DIR, progress=progress)
    if problem is not None:
        env.messages.append(problem)
        return
    for name in ready:
        env.datasets[name] += f" (copied to local disk {LOCAL_DATA_DIR / name})"
    os.environ[ENV_DATA] = str(LOCAL_DATA_DIR)
    env.data_root = LOCAL_DATA_DIR


def describe(env: NotebookEnvironment) -> str:
    """The setup summary printed at the top of a notebook."""
    from starter.config import describe_environment

    where = {
        "colab": "Google Colab (kit installed from Drive)" if env.installed else "Google Colab",
        "server": f"{_python_environment()} (nothing installed)",
    }.get(env.kind, env.kind)
    lines = [
        f"assignment   {env.assignment}",
        f"running on   {where}",
        f"kit          {env.kit_dir}",
        describe_environment(),
        _versions_line(),
    ]
    lines += [f"data         {name}: {status}" for name, status in env.datasets.items()]
    lines += [f"note         {message}" for message in env.messages]
    return "\n".join(lines)
