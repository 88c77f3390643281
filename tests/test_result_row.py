"""starter.runs.result_row and starter.notebook.evaluate_row: one call per results row, in the stored format."""

from __future__ import annotations

import math

import torch

from starter.notebook import evaluate_row
from starter.runs import ExperimentResult, RunSettings, RunStore, result_row
from starter.train import History

CLASSES = ["background", "door"]
SETTINGS = RunSettings("cmp_facade", (96, 128), 8, "cpu", "cpu", CLASSES, [(0, 0, 0), (255, 0, 0)])
TEST = {"pixel_acc": 0.75, "miou": 0.5, "confusion": torch.tensor([[3, 1], [0, 2]])}


def iou_per_class(conf):
    """A stand-in for the student's IoU: TP / (TP + FP + FN) per class."""
    tp = conf.diag().double()
    return tp / (conf.sum(0) + conf.sum(1) - tp)


def test_row_holds_what_the_notebooks_wrote_by_hand():
    """Does result_row give the ExperimentResult the notebooks built with 14 keyword arguments?"""
    history = History(train_loss=[1.0, 0.5], epoch_time=[2.0, 4.0])
    row = result_row("U-Net", SETTINGS, TEST, iou_fn=iou_per_class, history=history, extra={"mAP": 0.3})
    by_hand = ExperimentResult(
        name="U-Net",
        data="cmp_facade",
        image_size="96x128",
        epochs_run=2,
        epochs_planned=8,
        profile="cpu",
        device="cpu",
        seconds_per_epoch=3.0,
        pixel_acc=0.75,
        miou=0.5,
        per_class_iou={"background": 0.75, "door": 2 / 3},
        confusion=[[3, 1], [0, 2]],
        history=history.as_dict(),
        extra={"mAP": 0.3},
    )
    assert row.to_dict() == by_hand.to_dict()


def test_row_without_training_plans_no_epochs():
    """Does a model that was not trained (a prior) get no epochs, no curves and no time per epoch?"""
    row = result_row("prior", SETTINGS, TEST, iou_fn=iou_per_class)
    assert (row.epochs_run, row.epochs_planned, row.history) == (0, 0, {})
    assert math.isnan(row.seconds_per_epoch)


def test_square_sizes_read_as_the_tables_show_them():
    """Is an int image size written "256x256", as the FCN notebook's rows always were?"""
    settings = RunSettings("synthetic", 256, 1, "fast", "cpu", CLASSES)
    assert result_row("x", settings, TEST, iou_fn=iou_per_class).image_size == "256x256"


class _Constant(torch.nn.Module):
    """Predicts class 1 everywhere (a parameter so that it has a device)."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([0.0, 1.0]))

    def forward(self, x):
        return self.bias.view(1, 2, 1, 1).expand(x.shape[0], 2, *x.shape[-2:])


def test_evaluate_row_uses_the_given_metrics_and_saves_the_figure(tmp_path):
    """Does evaluate_row score with the functions it is given, save a predictions figure and survive the store?"""
    calls = []

    def confusion_fn(pred, target, n_class):
        calls.append("confusion")
        return torch.bincount(target.reshape(-1) * n_class + pred.reshape(-1), minlength=n_class**2).view(n_class, -1)

    def miou_fn(conf):
        calls.append("miou")
        return float(iou_per_class(conf).nanmean())

    masks = torch.tensor([[[0, 1], [1, 1]]])
    loader = [(torch.zeros(1, 3, 2, 2), masks)]
    store = RunStore(tmp_path)
    row = evaluate_row(
        "constant", _Constant(), loader, SETTINGS, confusion_fn=confusion_fn, miou_fn=miou_fn,
        iou_fn=iou_per_class, store=store, with_ap=True,
    )  # fmt: skip
    assert "confusion" in calls and "miou" in calls
    assert row.confusion == [[0, 1], [0, 3]] and row.pixel_acc == 0.75
    assert row.per_class_iou == {"background": 0.0, "door": 0.75}
    assert set(row.extra) == {"mAP", "AP background", "AP door"}
    assert (store.experiment_dir("constant") / "predictions.png").is_file()
    store.save_result("constant", row)
    assert store.load_result("constant").to_dict() == row.to_dict()


def test_row_scored_otherwise_has_nan_pixel_metrics():
    """Does a row without a test confusion matrix (instance AP only) store NaN pixel metrics and its extras?"""
    settings = RunSettings("cmp_facade", "longest side 512", 4, "cpu", "cpu", CLASSES)
    row = result_row("Mask R-CNN", settings, extra={"AP50": 0.4})
    assert math.isnan(row.pixel_acc) and math.isnan(row.miou)
    assert (row.image_size, row.per_class_iou, row.confusion, row.extra) == ("longest side 512", {}, [], {"AP50": 0.4})
    assert ExperimentResult.from_json(row.to_json()).to_dict() == row.to_dict()
