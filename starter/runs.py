"""Experiment results that survive a Colab disconnect, rebuilt from disk.

Every experiment of a notebook gets a folder under ``runs_dir(assignment)`` (in Drive on Colab)
holding its checkpoint, fit's training state, figures and, once it finished, ``result.json``.
Re-running the notebook after a disconnect skips the finished experiments, resumes the one that
was cut off, and rebuilds every table and plot from disk::

    store = RunStore(runs_dir("fcn"))

    def train_fcn32s(checkpoint_path):
        history = fit(model, train_loader, val_loader, ..., checkpoint_path=checkpoint_path, resume=True)
        ...
        return ExperimentResult(name="FCN-32s", ..., history=history.as_dict())

    result = run_or_load(store, "FCN-32s", train_fcn32s)
    table = store.results()   # every finished experiment, in the order they finished

A notebook states once what its rows share (``RunSettings``) and builds each row with one call,
``result_row(name, settings, test, iou_fn=iou_per_class, history=history)``, from what it has:
``evaluate``'s test metrics, fit's ``History`` and the student's own per-class IoU.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starter.common import write_atomic, write_atomically
from starter.constants import ENV_RUNS
from starter.environment import in_colab, resolve_drive_dir

__all__ = ["ExperimentResult", "RunSettings", "RunStore", "result_row", "run_or_load", "runs_dir"]

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"  # fit keeps its training state next to it: checkpoint.state.pt
RESULT_FORMAT = 1
_MAX_FOLDER_NAME = 60  # characters kept from the experiment name before the hash
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def runs_dir(assignment: str) -> Path:
    """The folder that holds one assignment's experiment runs (not created here).

    Inputs:
        assignment: e.g. "fcn".
    Returns:
        ``$SEGKIT_RUNS/<assignment>`` when $SEGKIT_RUNS is set; on Colab ``<kit folder in
        Drive>/runs/<assignment>`` (survives the session); otherwise ``./runs/<assignment>``
        under the current directory.
    """
    configured = os.environ.get(ENV_RUNS, "").strip()
    if configured:
        return Path(configured).expanduser() / assignment
    if in_colab():
        return resolve_drive_dir() / "runs" / assignment
    return Path.cwd() / "runs" / assignment


# --------------------------------------------------------------------------------------
# NaN-safe JSON: NaN and infinities become null (JSON has no NaN), and null comes back as NaN
# where a number is expected.
# --------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """Inputs: nested dicts/lists/tuples of numbers, str, None. Returns: the same with non-finite floats as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _nan_for_null(value: Any) -> Any:
    """Inputs: decoded JSON of numbers. Returns: the same with every None as NaN (inside dicts and lists too)."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: _nan_for_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_for_null(v) for v in value]
    return value


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


@dataclass
class ExperimentResult:
    """What one finished experiment measured: the row of a results table, and its plots' data.

    ``per_class_iou`` maps class name -> IoU (NaN for a class absent from the test set);
    ``confusion`` is the (n_class, n_class) count matrix, rows = ground truth; ``history`` is
    ``History.as_dict()``; ``extra`` holds further metrics, e.g. {"mAP": 0.61, "mean_f1": 0.7}.
    In JSON, NaN is stored as null; ``from_dict`` turns null back into NaN in the metrics
    (history keeps null, as History.from_dict expects).
    """

    name: str
    data: str
    image_size: str | tuple[int, ...]
    epochs_run: int
    epochs_planned: int
    profile: str
    device: str
    seconds_per_epoch: float
    pixel_acc: float
    miou: float
    per_class_iou: dict[str, float] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    history: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # One line: a notebook cell ending in a result shows this, not every confusion count and epoch.
        shown = ", ".join(f"{key} {value:.3f}" for key, value in self.extra.items() if isinstance(value, (int, float)))
        metrics = f"pixel accuracy {self.pixel_acc:.3f}, mIoU {self.miou:.3f}" + (f", {shown}" if shown else "")
        return (
            f"ExperimentResult({self.name!r}: {metrics}; {self.epochs_run}/{self.epochs_planned} epochs, "
            f"{self.profile} profile, {self.data})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Returns: plain JSON-ready data (NaN -> None, tuples -> lists, tensors/arrays in confusion -> ints)."""
        d = asdict(self)
        d["image_size"] = self.image_size if isinstance(self.image_size, str) else [int(v) for v in self.image_size]
        d["per_class_iou"] = {str(k): float(v) for k, v in self.per_class_iou.items()}
        d["confusion"] = [[int(v) for v in row] for row in self.confusion]
        return _json_safe(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentResult:
        """The inverse of to_dict (unknown keys raise a TypeError)."""
        values = dict(d)
        size = values.get("image_size")
        values["image_size"] = size if isinstance(size, str) else tuple(int(v) for v in size)
        for key in ("seconds_per_epoch", "pixel_acc", "miou"):
            values[key] = _number(values.get(key))
        values["per_class_iou"] = {k: _number(v) for k, v in values.get("per_class_iou", {}).items()}
        values["confusion"] = [[int(v) for v in row] for row in values.get("confusion", [])]
        values["extra"] = _nan_for_null(values.get("extra", {}))
        values["history"] = dict(values.get("history", {}))
        return cls(**values)

    def to_json(self) -> str:
        """Returns: JSON text without bare NaN/Infinity tokens (strict JSON, readable anywhere)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ExperimentResult:
        """The inverse of to_json."""
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class RunSettings:
    """What every results row of one notebook shares: the data, the sizes and where it ran.

    ``image_size`` is an int (square images), (height, width) or a text such as "longest side 512";
    ``epochs`` is what fit was asked
    for (a row without training, such as a prior, plans none); ``classes`` name the confusion
    matrix's rows; ``palette`` colours them in the saved prediction figures.
    """

    data: str
    image_size: int | tuple[int, int] | str
    epochs: int
    profile: str
    device: str
    classes: Sequence[str]
    palette: Sequence[Sequence[int]] = ()

    def size_text(self) -> str:
        """Returns: the image size as the results tables show it, e.g. "256x256" or "96x320"."""
        size = self.image_size
        if isinstance(size, str):
            return size
        height, width = (size, size) if isinstance(size, int) else size
        return f"{height}x{width}"


def _to_list(value: Any) -> list[Any]:
    """A tensor, an array or a sequence as nested Python lists (tolist where the value has it)."""
    return value.tolist() if hasattr(value, "tolist") else list(value)


def result_row(
    name: str,
    settings: RunSettings,
    test: Mapping[str, Any] | None = None,
    *,
    iou_fn: Callable[[Any], Any] | None = None,
    history: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> ExperimentResult:
    """One results row, from what a notebook has after testing a model.

    Inputs:
        name: the experiment's name.
        settings: what the notebook's rows share.
        test: ``starter.train.evaluate``'s dict: "pixel_acc", "miou" and the summed "confusion" (n, n);
            None for an experiment scored otherwise (e.g. instance AP in ``extra``): NaN pixel metrics.
        iou_fn: the student's per-class IoU, confusion -> (n,) IoUs (stored per class by name); needed with `test`.
        history: fit's ``History``, or None for a model that was not trained (no epochs, no curves).
        extra: further metrics, e.g. {"mAP": 0.31}.
    Returns:
        the ExperimentResult that run_or_load saves (the stored format is ExperimentResult's).
    """
    epoch_times = list(history.epoch_time) if history is not None else []
    if test is None:
        test = {"pixel_acc": float("nan"), "miou": float("nan"), "confusion": []}
        per_class_iou: dict[str, float] = {}
    elif iou_fn is None:
        raise TypeError("result_row needs iou_fn (the per-class IoU) to record a test confusion matrix")
    else:
        per_class_iou = dict(zip(settings.classes, (float(v) for v in _to_list(iou_fn(test["confusion"])))))
    return ExperimentResult(
        name=name,
        data=settings.data,
        image_size=settings.size_text(),
        epochs_run=len(history.train_loss) if history is not None else 0,
        epochs_planned=settings.epochs if history is not None else 0,
        profile=settings.profile,
        device=str(settings.device),
        seconds_per_epoch=float(sum(epoch_times) / len(epoch_times)) if epoch_times else float("nan"),
        pixel_acc=float(test["pixel_acc"]),
        miou=float(test["miou"]),
        per_class_iou=per_class_iou,
        confusion=_to_list(test["confusion"]),
        history=history.as_dict() if history is not None else {},
        extra=dict(extra or {}),
    )


def _folder_name(name: str) -> str:
    """A safe, stable folder name for an experiment name.

    Names that are already safe are kept; others are cleaned and get a short hash of the full
    name, so "lr=1e-3" and "lr 1e-3" cannot share a folder.
    """
    if not name or not name.strip():
        raise ValueError("an experiment needs a non-empty name")
    cleaned = _UNSAFE.sub("_", name.strip()).strip("._") or "experiment"
    if cleaned == name and len(name) <= _MAX_FOLDER_NAME:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned[:_MAX_FOLDER_NAME]}-{digest}"


class RunStore:
    """The experiments of one notebook on disk: ``<root>/<experiment folder>/{result.json, checkpoint.pt, ...}``.

    Inputs:
        root: e.g. ``runs_dir("fcn")``; created when the first experiment folder is.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def experiment_dir(self, name: str) -> Path:
        """Returns: the experiment's folder (created), named by a stable, safe version of `name`."""
        folder = self.root / _folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def checkpoint_path(self, name: str) -> Path:
        """Returns: what to pass to fit(checkpoint_path=..., resume=True); its training state lands next to it."""
        return self.experiment_dir(name) / CHECKPOINT_FILE

    def _result_file(self, name: str) -> Path:
        return self.root / _folder_name(name) / RESULT_FILE

    def save_result(self, name: str, result: ExperimentResult) -> Path:
        """Record `name` as finished with `result` (atomic JSON). Returns: the file written."""
        if not isinstance(result, ExperimentResult):
            raise TypeError(f"save_result needs an ExperimentResult, got {type(result).__name__}")
        record = {
            "format": RESULT_FORMAT,
            "name": name,
            "finished_at": time.time_ns(),  # orders results(); ns so that quick successive saves differ
            "result": result.to_dict(),
        }
        return write_atomic(self.experiment_dir(name) / RESULT_FILE, json.dumps(record, indent=1, allow_nan=False))

    def _read_record(self, path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            ExperimentResult.from_dict(record["result"])  # validate before trusting it
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            # Atomic writes make this rare (a hand edit, a foreign file): rerun rather than crash.
            warnings.warn(f"ignoring unreadable result {path} ({type(error).__name__}: {error})", stacklevel=3)
            return None
        return record

    def load_result(self, name: str) -> ExperimentResult | None:
        """Returns: the saved result of `name`, or None when it has not finished."""
        record = self._read_record(self._result_file(name))
        return None if record is None else ExperimentResult.from_dict(record["result"])

    def is_finished(self, name: str) -> bool:
        """Returns: whether `name` has a saved result."""
        return self.load_result(name) is not None

    def results(self) -> dict[str, ExperimentResult]:
        """Returns: every finished experiment, name -> result, in the order they finished."""
        if not self.root.is_dir():
            return {}
        records = [self._read_record(folder / RESULT_FILE) for folder in sorted(self.root.iterdir()) if folder.is_dir()]
        records = sorted((r for r in records if r is not None), key=lambda r: (r["finished_at"], r["name"]))
        return {r["name"]: ExperimentResult.from_dict(r["result"]) for r in records}

    def save_figure(self, name: str, fig: Any, filename: str) -> Path:
        """Save a matplotlib figure as PNG in the experiment's folder (atomically).

        Inputs:
            name: the experiment; fig: a matplotlib Figure; filename: e.g. "curves" or "curves.png".
        Returns:
            the PNG's path.
        """
        stem = _UNSAFE.sub("_", Path(filename).stem).strip("._") or "figure"
        path = self.experiment_dir(name) / f"{stem}.png"
        return write_atomically(path, lambda temporary: fig.savefig(temporary, format="png", bbox_inches="tight"))


def undone_stub(exc: BaseException | None) -> str | None:
    """The name of the student's stub that raised `exc` (its bare `raise NotImplementedError()`), else None.

    Only a bare NotImplementedError raised in the student's own code counts: PyTorch's NotImplementedErrors
    carry a message and are raised in library frames, and any other error is a real one. An error the kit
    raised *from* a stub's (e.g. overfit_one_batch's OverfitError) is looked through to that stub.
    """
    import traceback

    from starter.checks.report import frame_origin, is_stub_error, stub_raised_by

    while exc is not None and not is_stub_error(exc):
        frames = traceback.extract_tb(exc.__traceback__)
        if not frames or frame_origin(frames[-1].filename) != "kit":
            return None
        exc = exc.__cause__
    if exc is None:
        return None
    name = stub_raised_by(exc, ())
    return name.split(".")[0] if name else None  # "FCN32s.__init__" -> "FCN32s": the name the student wrote


def print_skipped(what: str, stub: str) -> None:
    """The one line a given cell prints instead of raising when a unit it uses is still a stub."""
    print(f"skipped: {what} needs `{stub}`, which is not written yet; Run All continues")


def run_or_load(store: RunStore, name: str, train: Callable[[Path], ExperimentResult]) -> ExperimentResult | None:
    """Run an experiment once; later calls (e.g. after a disconnect) load its result instead.

    Inputs:
        store: where results live.
        name: the experiment's name (the key in store.results()).
        train: train(checkpoint_path) -> ExperimentResult; expected to call
            fit(..., checkpoint_path=checkpoint_path, resume=True), so that a run cut off
            midway continues where it stopped.
    Returns:
        the saved result when `name` finished earlier (train is not called), else train's result,
        saved before it is returned; None, with a line saying so, when training meets a unit that is still
        its stub (so "Run All" carries on; the tables leave the row out). Once the result is saved, the resumable training state is
        deleted (the best weights stay in the checkpoint): it is only needed while a run is
        unfinished, and for a VGG16 FCN it is about 1 GB of Drive space.
    """
    from starter.train import state_path_for  # torch only when an experiment actually runs

    saved = store.load_result(name)
    if saved is not None:
        print(f"{name}: skipped: finished earlier (result in {store.experiment_dir(name)})")
        return saved
    try:
        result = train(store.checkpoint_path(name))
    except Exception as exc:
        stub = undone_stub(exc)
        if stub is None:
            raise  # a real error of a written unit, or PyTorch's: it must show
        print_skipped(name, stub)
        return None
    if not isinstance(result, ExperimentResult):
        raise TypeError(f"the train function for {name!r} must return an ExperimentResult, got {type(result).__name__}")
    store.save_result(name, result)
    state_path_for(store.checkpoint_path(name)).unlink(missing_ok=True)
    return result
