"""starter.runs: experiment results on disk that survive a disconnect and rebuild the notebook's tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from starter.constants import ENV_RUNS
from starter.runs import ExperimentResult, RunStore, run_or_load, runs_dir


def result(name: str = "FCN-32s", miou: float = 0.42) -> ExperimentResult:
    return ExperimentResult(
        name=name,
        data="CMP Facade, 500 train / 30 val / 76 test",
        image_size=(256, 256),
        epochs_run=3,
        epochs_planned=4,
        profile="cpu",
        device="cpu",
        seconds_per_epoch=12.5,
        pixel_acc=0.81,
        miou=miou,
        per_class_iou={"background": 0.9, "door": float("nan")},
        confusion=[[5, 1], [0, 7]],
        history={"train_loss": [1.0, 0.5], "best_miou": float("nan"), "best_checkpoint": None},
        extra={"mAP": float("nan"), "per_class_ap": [0.5, float("nan")], "mean_f1": 0.7},
    )


def same(a: ExperimentResult, b: ExperimentResult) -> bool:
    """Equality with NaN == NaN (compares the JSON forms, where NaN is null)."""
    return a.to_dict() == b.to_dict()


def test_round_trip_with_nan_is_strict_json():
    """Does a result with NaN metrics survive to_json/from_json, with no bare NaN token in the text?"""
    original = result()
    text = original.to_json()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token} in the JSON"))
    back = ExperimentResult.from_json(text)
    assert back.image_size == (256, 256) and back.confusion == [[5, 1], [0, 7]]
    assert math.isnan(back.per_class_iou["door"]) and back.per_class_iou["background"] == 0.9
    assert math.isnan(back.extra["mAP"]) and math.isnan(back.extra["per_class_ap"][1]) and back.extra["mean_f1"] == 0.7
    assert back.history["best_miou"] is None  # History.from_dict turns it back into NaN
    assert same(back, original)
    assert same(ExperimentResult.from_dict(back.to_dict()), original)
    as_text = ExperimentResult.from_json(
        ExperimentResult(**{**vars(original), "image_size": "256x256", "miou": float("inf")}).to_json()
    )
    assert as_text.image_size == "256x256" and math.isnan(as_text.miou)


def test_confusion_from_tensors_and_arrays():
    """Are a torch tensor or NumPy confusion matrix and numpy floats stored as plain ints/floats?"""
    import numpy as np
    import torch

    stored = ExperimentResult(**{**vars(result()), "confusion": torch.tensor([[3, 0], [2, 4]])})
    assert stored.to_dict()["confusion"] == [[3, 0], [2, 4]]
    stored = ExperimentResult(**{**vars(result()), "confusion": np.array([[1, 2], [3, 4]]),
                                 "per_class_iou": {"a": np.float32(0.5)}})  # fmt: skip
    assert json.loads(stored.to_json())["per_class_iou"] == {"a": 0.5}


def test_results_survive_a_new_store_in_finish_order(tmp_path):
    """Does a fresh RunStore on the same folder (a new Colab session) find every result, in the order they finished?"""
    store = RunStore(tmp_path / "runs")
    assert store.results() == {} and not store.is_finished("FCN-32s")
    store.save_result("U-Net (weighted CE)", result("U-Net", 0.5))
    store.save_result("FCN-32s", result("FCN-32s", 0.3))
    store.save_result("baseline", result("baseline", 0.1))
    again = RunStore(tmp_path / "runs")
    assert list(again.results()) == ["U-Net (weighted CE)", "FCN-32s", "baseline"]
    assert again.is_finished("FCN-32s") and not again.is_finished("FCN-8s")
    assert again.load_result("FCN-32s").miou == 0.3 and again.load_result("FCN-8s") is None
    store.save_result("U-Net (weighted CE)", result("U-Net", 0.55))  # a rerun finishes last now
    assert list(again.results()) == ["FCN-32s", "baseline", "U-Net (weighted CE)"]
    assert not list((tmp_path / "runs").rglob("*.tmp"))


def test_experiment_folders_are_safe_and_stable(tmp_path):
    """Are odd names mapped to safe, distinct folders, the same every time?"""
    store = RunStore(tmp_path)
    odd = store.experiment_dir("../U-Net: lr=1e-3/bs 8")
    assert odd.parent == tmp_path and odd.is_dir() and "/" not in odd.name and not odd.name.startswith(".")
    assert store.experiment_dir("../U-Net: lr=1e-3/bs 8") == odd
    assert store.experiment_dir("U-Net: lr=1e-3 bs 8") != odd
    assert store.experiment_dir("fcn32s").name == "fcn32s"
    assert store.checkpoint_path("fcn32s") == tmp_path / "fcn32s" / "checkpoint.pt"
    with pytest.raises(ValueError, match="non-empty"):
        store.experiment_dir("  ")


def test_run_or_load_skips_finished_and_runs_unfinished(tmp_path, capsys):
    """Is a finished experiment loaded without calling train, and an unfinished one trained with its checkpoint path and saved?"""
    store = RunStore(tmp_path)
    calls = []

    def train(checkpoint_path: Path) -> ExperimentResult:
        calls.append(checkpoint_path)
        checkpoint_path.write_bytes(b"best weights")
        checkpoint_path.with_name("checkpoint.state.pt").write_bytes(b"resumable state")
        return result("FCN-8s", 0.6)

    first = run_or_load(store, "FCN-8s", train)
    assert calls == [tmp_path / "FCN-8s" / "checkpoint.pt"] and first.miou == 0.6
    assert RunStore(tmp_path).is_finished("FCN-8s")
    # Finished: the best weights stay, the (large) resumable state is no longer needed.
    assert (tmp_path / "FCN-8s" / "checkpoint.pt").is_file()
    assert not (tmp_path / "FCN-8s" / "checkpoint.state.pt").exists()

    def must_not_train(checkpoint_path):
        raise AssertionError("a finished experiment was trained again")

    capsys.readouterr()
    again = run_or_load(RunStore(tmp_path), "FCN-8s", must_not_train)
    assert "skipped: finished earlier" in capsys.readouterr().out and same(again, first)
    with pytest.raises(TypeError, match="must return an ExperimentResult"):
        run_or_load(store, "other", lambda path: {"miou": 1.0})
    assert not store.is_finished("other")


def test_unreadable_result_counts_as_unfinished(tmp_path):
    """Is a damaged result.json reported and treated as not finished (so the run resumes) rather than crashing?"""
    store = RunStore(tmp_path)
    store.save_result("a", result("a"))
    (tmp_path / "a" / "result.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable result"):
        assert not store.is_finished("a")


def test_save_figure_writes_png(tmp_path):
    """Is a figure saved as a PNG in the experiment's folder?"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = RunStore(tmp_path).save_figure("FCN-32s", fig, "curves")
    plt.close(fig)
    assert path == tmp_path / "FCN-32s" / "curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_dir_env_colab_and_default(tmp_path, monkeypatch):
    """Does runs_dir honour $SEGKIT_RUNS, use Drive on Colab, and ./runs elsewhere?"""
    monkeypatch.setenv(ENV_RUNS, str(tmp_path / "mine"))
    assert runs_dir("fcn") == tmp_path / "mine" / "fcn"
    monkeypatch.delenv(ENV_RUNS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("starter.runs.in_colab", lambda: False)
    assert runs_dir("unet") == tmp_path / "runs" / "unet"
    monkeypatch.setattr("starter.runs.in_colab", lambda: True)
    monkeypatch.setenv("SEGKIT_DRIVE_DIR", str(tmp_path / "drive" / "segkit"))
    assert runs_dir("unet") == tmp_path / "drive" / "segkit" / "runs" / "unet"
