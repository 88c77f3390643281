"""Given plumbing shared by the training notebooks: one call per results row, the results tables and plots.

A notebook states once what its rows share and records each experiment with one call::

    SETTINGS = RunSettings(DATA_NAME, IMAGE_SIZE, EPOCHS, PROFILE, str(device), CLASSES, PALETTE)
    row = evaluate_row(name, model, test_loader, SETTINGS, confusion_fn=confusion_matrix, miou_fn=mean_iou,
                       iou_fn=iou_per_class, history=history, store=store)

The metrics are always the student's own functions, passed in (``confusion_fn``, ``miou_fn``, ``iou_fn``);
nothing here computes a confusion matrix or an IoU by itself. The ``show_*`` functions display their
tables and figures in the notebook (IPython's ``display``) and return nothing or a name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from starter.runs import ExperimentResult, RunSettings, RunStore, print_skipped, result_row, undone_stub

__all__ = [
    "PriorModel",
    "count_parameters",
    "evaluate_row",
    "plot_histories",
    "print_class_weights",
    "show_best",
    "show_iou_comparison",
    "show_results",
    "show_saved_predictions",
    "skip_if_undone",
    "unless_undone",
]

PREDICTIONS_FIGURE = "predictions"  # the figure evaluate_row saves in each experiment's folder


class _SkipIfUndone:
    """See skip_if_undone."""

    def __init__(self, what: str):
        self.what = what
        self.skipped: str | None = None  # the stub's name once it was met

    def __enter__(self) -> _SkipIfUndone:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        stub = undone_stub(exc) if exc is not None else None
        if stub is None:
            return False  # no error, or a real one: it propagates unchanged, the student's frames first
        self.skipped = stub
        print_skipped(self.what, stub)
        return True


def skip_if_undone(what: str) -> _SkipIfUndone:
    """A given cell's body that needs graded units: skipped with one line while one of them is still a stub.

    Jupyter's "Run All" stops at the first cell that raises; a stub's bare NotImplementedError met
    inside ``with skip_if_undone("the parameter counts"):`` prints "skipped: the parameter counts needs
    `UNet`, which is not written yet; Run All continues" instead. Any other error (a written unit's
    bug, PyTorch's own NotImplementedError) still raises. Names the block assigns stay unset when skipped.
    """
    return _SkipIfUndone(what)


def unless_undone(what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """function(*args, **kwargs), or None with skip_if_undone's line when it meets a student's stub.

    For a given cell whose value later cells use: ``results = unless_undone("the maps", show_cams, ...)``;
    the later cells test ``results is not None``.
    """
    with skip_if_undone(what):
        return function(*args, **kwargs)
    return None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def print_class_weights(weights: torch.Tensor, classes: Sequence[str]) -> None:
    """Each class's share of the labelled pixels and its weight, from inverse-frequency weights (1 / w_c = share)."""
    shares = torch.where(weights > 0, 1 / weights, torch.zeros_like(weights))
    for name, share, weight in zip(classes, shares.tolist(), weights.tolist()):
        print(f"{name:>11}: {100 * share:5.1f}% of the pixels, weight {weight:7.2f}")


class PriorModel(nn.Module):
    """A fitted per-pixel prior as a 'model' that ignores its input: returns log-probabilities (N, C, H, W).

    Inputs:
        prior: what the student's fit_pixel_prior returned.
        predict_fn: the student's predict_prior(prior, n) -> probabilities (n, C, H, W).
    """

    def __init__(self, prior: torch.Tensor, predict_fn: Callable[[torch.Tensor, int], torch.Tensor]):
        super().__init__()
        self.register_buffer("prior", prior)
        self.predict_fn = predict_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_fn(self.prior, x.shape[0]).to(x.device).clamp(min=1e-8).log()


def _average_precision(model: nn.Module, loader: Iterable, settings: RunSettings) -> dict[str, float]:
    """mAP and AP per class over the labelled test pixels (scikit-learn, in starter.metrics)."""
    from starter.metrics import average_precision_per_class, collect_scores

    scores, targets = collect_scores(model, loader, settings.device)
    ap = average_precision_per_class(scores, targets, len(settings.classes))
    return {"mAP": float(torch.nanmean(ap)), **{f"AP {c}": v for c, v in zip(settings.classes, ap.tolist())}}


def _save_predictions(store: RunStore, name: str, model: nn.Module, loader: Iterable, settings: RunSettings) -> None:
    """A figure of the first test batch's predictions, saved in the experiment's folder."""
    from starter.train import predict
    from starter.viz import show_predictions

    images, masks, preds = predict(model, loader, settings.device, max_batches=1)
    figure = show_predictions(images, masks, preds, palette=settings.palette, classes=settings.classes, n=2)
    store.save_figure(name, figure, PREDICTIONS_FIGURE)


def evaluate_row(
    name: str,
    model: nn.Module,
    loader: Iterable,
    settings: RunSettings,
    *,
    confusion_fn: Callable,
    miou_fn: Callable,
    iou_fn: Callable,
    history: Any = None,
    store: RunStore | None = None,
    with_ap: bool = False,
) -> ExperimentResult:
    """Test one model with the student's metrics and return its results row (what run_or_load saves).

    Inputs:
        name: the experiment's name; model: trained (or a PriorModel); loader: the test set.
        settings: what the notebook's rows share (sizes, epochs, profile, device, classes, palette).
        confusion_fn, miou_fn, iou_fn: the student's confusion_matrix, mean_iou and iou_per_class.
        history: fit's History (None for a model that was not trained).
        store: where to save a figure of the first test batch's predictions (skipped when None).
        with_ap: also record mAP and AP per class in the row's ``extra``.
    Returns:
        the ExperimentResult of ``starter.runs.result_row``.
    """
    from starter.train import evaluate

    test = evaluate(
        model,
        loader,
        settings.device,
        n_class=len(settings.classes),
        confusion_fn=confusion_fn,
        miou_fn=miou_fn,
        progress=False,
    )
    extra = _average_precision(model, loader, settings) if with_ap else None
    if store is not None:
        _save_predictions(store, name, model, loader, settings)
    return result_row(name, settings, test, iou_fn=iou_fn, history=history, extra=extra)


def show_results(results: Mapping[str, ExperimentResult], classes: Sequence[str], *, per_class: bool = True) -> None:
    """Display the results tables: a summary row per experiment, then IoU (and AP, where recorded) per class.

    Inputs:
        results: e.g. ``store.results()``; classes: the class names, in the confusion matrix's order.
        per_class: also show the per-class tables.
    """
    from IPython.display import Markdown, display

    from starter.viz import results_table

    if not results:
        print("No results yet: no experiment has finished (a unit it needs may still be a stub).")
        return
    with_ap = any("mAP" in r.extra for r in results.values())
    summary = {
        name: {
            "pixel acc": r.pixel_acc,
            "mIoU": r.miou,
            **({"mAP": r.extra.get("mAP")} if with_ap else {}),
            "epochs": r.epochs_run,
            "s / epoch": r.seconds_per_epoch,
        }
        for name, r in results.items()
    }
    display(Markdown("**Summary (test)**\n\n" + results_table(summary)))
    if not per_class:
        return
    iou_table = {name: r.per_class_iou for name, r in results.items()}
    display(Markdown("**IoU per class (test)**\n\n" + results_table(iou_table)))
    if with_ap:
        ap_table = {name: {c: r.extra.get(f"AP {c}") for c in classes} for name, r in results.items()}
        display(Markdown("**Average precision per class (test)**\n\n" + results_table(ap_table)))


def show_best(results: Mapping[str, ExperimentResult], classes: Sequence[str]) -> str | None:
    """Display the test IoU per class and the confusion matrix of the trained experiment with the best mIoU.

    Returns:
        its name; None (with a line saying so) when there is no result yet.
    """
    from IPython.display import display

    from starter.viz import plot_confusion, plot_iou_bars

    if not results:
        print("best network: none yet (no experiment has finished).")
        return None
    trained = [name for name, r in results.items() if r.history] or list(results)
    best = max(trained, key=lambda name: results[name].miou)
    print(f"best network: {best}")
    display(plot_iou_bars(list(results[best].per_class_iou.values()), classes, title=f"{best}: test IoU per class"))
    display(plot_confusion(results[best].confusion, classes))
    return best


def show_saved_predictions(store: RunStore, names: Iterable[str | None]) -> None:
    """Display the predictions figure evaluate_row saved for each named experiment (each once, in order);
    an experiment that has not finished (or None) gets a line instead."""
    from IPython.display import Image, display

    for name in dict.fromkeys(n for n in names if n is not None):
        figure = store.experiment_dir(name) / f"{PREDICTIONS_FIGURE}.png"
        if not store.is_finished(name) or not figure.exists():
            print(f"{name}: not trained yet, no predictions to show")
            continue
        print(name)
        display(Image(filename=str(figure)))


def plot_histories(results: Mapping[str, ExperimentResult]) -> Any:
    """The training curves of every trained experiment on shared axes (plot_history); None, with a line,
    when none was trained yet."""
    from starter.viz import plot_history

    histories = {name: r.history for name, r in results.items() if r.history}
    if not histories:
        print("No training curves yet: no experiment has been trained (a unit it needs may still be a stub).")
        return None
    return plot_history(histories)


def show_iou_comparison(results: Mapping[str, ExperimentResult], classes: Sequence[str]) -> None:
    """Display the test IoU per class of two experiments side by side, with their difference (second - first)."""
    from IPython.display import Markdown, display

    (first, first_result), (second, second_result) = results.items()
    lines = [f"| class | {first} | {second} | difference |", "|---|---|---|---|"]
    for name in classes:
        a, b = first_result.per_class_iou[name], second_result.per_class_iou[name]
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    heading = "Test IoU per class (nan: the class is in neither the test labels nor the predictions):"
    display(Markdown(heading + "\n\n" + "\n".join(lines)))
