"""The given parts of the patches notebook: tensors and regions, patch loaders, the two models, scoring.

Nothing here cuts, stitches or scores by itself: where a step is a graded unit (``extract_patches``,
``class_weights``, ``predict_full``, ``confusion_matrix``, ``precision_recall_f1``, ``DeepLabV3Plus``) the
helper takes the student's function or class as an argument and calls it::

    train_loader, val_loader = patch_loaders(regions, size, stride, batch_size, extract_fn=extract_patches)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from starter.constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "LogitsOnly",
    "PatchDataset",
    "TileScores",
    "image_mask_tensors",
    "make_patch_model",
    "miou_via_f1",
    "patch_loaders",
    "print_class_shares",
    "score_test_tile",
    "show_best_on_tile",
    "show_tile_tables",
    "train_val_regions",
]

Region = tuple[torch.Tensor, torch.Tensor]


def image_mask_tensors(image_np: np.ndarray, mask_np: np.ndarray) -> Region:
    """uint8 (H, W, 3) + int (H, W) -> ImageNet-normalised float (3, H, W) and int64 (H, W)."""
    image = torch.from_numpy(image_np).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return (image - mean[:, None, None]) / std[:, None, None], torch.from_numpy(mask_np).long()


def train_val_regions(image: torch.Tensor, mask: torch.Tensor, train_share: float = 0.8) -> dict[str, Region]:
    """The training region (the top `train_share` of the rows) and the validation region (the rest): no shared pixel."""
    split_row = int(train_share * image.shape[1])
    return {"train": (image[:, :split_row], mask[:split_row]), "val": (image[:, split_row:], mask[split_row:])}


def print_class_shares(regions: Mapping[str, Region], classes: Sequence[str], *, weights_fn: Callable) -> None:
    """Each region's share of every class, from the student's class weights (1 / w_c = class c's share)."""
    for name, (image, mask) in regions.items():
        weights = weights_fn(mask, len(classes))
        shares = torch.where(weights > 0, 1 / weights, torch.zeros_like(weights))
        listed = ", ".join(f"{c} {f:.2%}" for c, f in zip(classes, shares))
        print(f"{name} region {tuple(image.shape[1:])}: {listed}")


class PatchDataset(Dataset):
    """Image patches (N, 3, s, s) with their mask patches (N, s, s); optional flips / 90° rotations."""

    def __init__(self, image_patches: torch.Tensor, mask_patches: torch.Tensor, augment: bool = False):
        self.image_patches, self.mask_patches, self.augment = image_patches, mask_patches, augment

    def __len__(self) -> int:
        return len(self.image_patches)

    def __getitem__(self, index: int) -> Region:
        image, mask = self.image_patches[index], self.mask_patches[index]
        if self.augment:
            k = int(torch.randint(4, ()))
            image, mask = torch.rot90(image, k, (1, 2)), torch.rot90(mask, k, (0, 1))
            if torch.rand(()) < 0.5:
                image, mask = image.flip(2), mask.flip(1)
        return image.contiguous(), mask.contiguous()


def patch_loaders(
    regions: Mapping[str, Region], size: int, stride: int, batch_size: int, *, extract_fn: Callable
) -> tuple[DataLoader, DataLoader]:
    """Training and validation loaders of (size x size) patches cut with the student's `extract_fn`.

    Training patches are cut with `stride` and augmented; validation patches with stride = size.
    """
    datasets = {}
    for name, (image, mask) in regions.items():
        step = stride if name == "train" else size
        image_patches, _ = extract_fn(image, size, step)
        mask_patches, _ = extract_fn(mask[None], size, step)  # C = 1: the same windows
        datasets[name] = PatchDataset(image_patches, mask_patches[:, 0], augment=(name == "train"))
    print(f"patches of {size} px: {len(datasets['train'])} train (stride {stride}), {len(datasets['val'])} val")
    return (
        DataLoader(datasets["train"], batch_size=batch_size, shuffle=True),
        DataLoader(datasets["val"], batch_size=batch_size),
    )


class LogitsOnly(nn.Module):
    """Wraps a torchvision segmentation model: returns the "out" logits (B, K, H, W) instead of a dict."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def _imagenet_weights(weights: Any) -> Any:
    """`weights` once its file is in torchvision's cache (downloaded once), else None (from scratch)."""
    from starter.backbones import PretrainedWeightsUnavailable, ensure_weights

    try:
        ensure_weights(weights)
        return weights
    except PretrainedWeightsUnavailable as error:
        print(f"ImageNet weights unavailable, training from scratch instead:\n{error}")
        return None


def make_patch_model(architecture: str, n_class: int, *, imagenet: bool, deeplab_class: type) -> nn.Module:
    """A fresh model returning logits (B, K, s, s): "LR-ASPP" (torchvision's) or "DeepLabV3+" (the student's class).

    Inputs:
        imagenet: start the backbone from ImageNet weights (downloaded once; from scratch when unavailable).
        deeplab_class: the student's DeepLabV3Plus, called as deeplab_class(n_class, weights=...).
    """
    import torchvision
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet18_Weights

    if architecture == "DeepLabV3+":
        weights = _imagenet_weights(ResNet18_Weights.IMAGENET1K_V1) if imagenet else None
        return deeplab_class(n_class, weights=weights)
    backbone_weights = _imagenet_weights(MobileNet_V3_Large_Weights.IMAGENET1K_V1) if imagenet else None
    model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=backbone_weights, num_classes=n_class
    )
    return LogitsOnly(model)


def miou_via_f1(prf_fn: Callable) -> Callable[[torch.Tensor], float]:
    """fit's miou_fn from the student's precision_recall_f1: IoU_c = F1_c / (2 - F1_c), NaN classes skipped."""

    def miou(conf: torch.Tensor) -> float:
        _, _, f1 = prf_fn(conf)
        return float(torch.nanmean(f1 / (2 - f1)))

    return miou


@dataclass
class TileScores:
    """The test tile as every model predicted it: summary rows, per-class scores and the predictions."""

    summary: dict[str, dict[str, float]]
    per_class: dict[str, dict[str, torch.Tensor]]  # name -> precision, recall, f1, iou, confusion
    predictions: dict[str, torch.Tensor]


def score_test_tile(
    models: Mapping[str, nn.Module],
    image: torch.Tensor,
    mask: torch.Tensor,
    classes: Sequence[str],
    *,
    predict_fn: Callable,
    confusion_fn: Callable,
    prf_fn: Callable,
    batch_size: int = 64,
) -> TileScores:
    """Each model predicts the whole tile with the student's `predict_fn` (stride = half its patch size, read from
    the name's leading number) and is scored with the student's `confusion_fn` and `prf_fn`; IoU from F1."""
    scores = TileScores({}, {}, {})
    for name, model in models.items():
        size = int(name.split()[0])
        started = time.time()
        prediction = predict_fn(model, image, size, size // 2, batch_size=batch_size).argmax(0)
        conf = confusion_fn(prediction, mask, len(classes))
        precision, recall, f1 = prf_fn(conf)
        iou = f1 / (2 - f1)
        scores.predictions[name] = prediction
        scores.per_class[name] = {"precision": precision, "recall": recall, "F1": f1, "IoU": iou.float(), "conf": conf}
        scores.summary[name] = {
            "pixel acc": float(conf.diag().sum() / conf.sum()),
            "mean F1": float(torch.nanmean(f1)),
            "mIoU": float(torch.nanmean(iou)),
            "car F1": float(f1[list(classes).index("car")]) if "car" in classes else float("nan"),
            "predict s": time.time() - started,
            "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
        }
    return scores


def show_tile_tables(scores: TileScores, classes: Sequence[str]) -> None:
    """Display the summary table (a row per model) and the per-class table (a row per model and class)."""
    from IPython.display import Markdown, display

    from starter.viz import results_table

    display(Markdown(results_table(scores.summary)))
    rows = {}
    for name, metrics in scores.per_class.items():
        for c, class_name in enumerate(classes):
            rows[f"{name} / {class_name}"] = {
                key: float(metrics[key][c]) for key in ("precision", "recall", "F1", "IoU")
            }
    display(Markdown(results_table(rows)))


def show_best_on_tile(
    scores: TileScores,
    image: torch.Tensor,
    mask: torch.Tensor,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
) -> str:
    """Display the prediction of the model with the best mean F1 beside the labels, and its confusion matrix.

    Returns:
        the best model's name.
    """
    from IPython.display import display

    from starter.viz import plot_confusion, show_predictions

    best = max(scores.summary, key=lambda name: scores.summary[name]["mean F1"])
    print(f"best model: {best}")
    prediction = scores.predictions[best][None]
    display(show_predictions(image[None], mask[None], prediction, palette=palette, classes=classes, n=1))
    display(plot_confusion(scores.per_class[best]["conf"], classes))
    return best
