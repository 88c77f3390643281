"""Public checks of units that several assignments share (same contract, same tiny examples).

Each assignment module registers these under its own unit names, e.g.
`register("unet_confusion")(confusion_matrix_check)`.
"""

import math
from collections.abc import Callable

import torch

from starter.checks.core import expect


def confusion_matrix_check(confusion_matrix: Callable[..., torch.Tensor]) -> None:
    pred = torch.tensor([[0, 1], [1, 1]])
    target = torch.tensor([[0, 1], [0, 255]])
    conf = confusion_matrix(pred, target, 2)
    expect(isinstance(conf, torch.Tensor) and tuple(conf.shape) == (2, 2), "return a (n_class, n_class) tensor")
    expect(conf.dtype == torch.int64, f"dtype should be int64, got {conf.dtype}")
    expect(
        conf.tolist() == [[1, 1], [0, 1]],
        f"got {conf.tolist()} for the 2x2 example in this check; "
        "rows are ground truth, columns prediction, and 255 is skipped",
    )


def iou_check(iou_per_class: Callable[..., torch.Tensor], mean_iou: Callable[..., float]) -> None:
    conf = torch.tensor([[2, 1, 0], [0, 1, 0], [0, 0, 0]])
    iou = iou_per_class(conf)
    expect(isinstance(iou, torch.Tensor) and tuple(iou.shape) == (3,), "iou_per_class returns a (n_class,) tensor")
    expect(
        abs(float(iou[0]) - 2 / 3) < 1e-6 and abs(float(iou[1]) - 0.5) < 1e-6,
        f"got {iou.tolist()}; class 0 has IoU 2/3 and class 1 has 1/2 here",
    )
    expect(math.isnan(float(iou[2])), "a class absent from both prediction and ground truth has IoU NaN")
    miou = mean_iou(conf)
    expect(isinstance(miou, float), f"mean_iou returns a Python float, got {type(miou).__name__}")
    expect(abs(miou - 7 / 12) < 1e-6, f"mean_iou should ignore NaN classes; got {miou}")


def class_weights_check(class_weights: Callable[..., torch.Tensor]) -> None:
    masks = torch.tensor([[0, 0, 0, 1], [255, 1, 0, 255]])  # 6 labelled: four 0s, two 1s, no 2
    weights = class_weights(masks, 3)
    expect(isinstance(weights, torch.Tensor) and tuple(weights.shape) == (3,), "return a (n_class,) tensor")
    expect(weights.is_floating_point(), f"the weights must be a float tensor, got {weights.dtype}")
    expect(
        torch.allclose(weights.double(), torch.tensor([1.5, 3.0, 0.0], dtype=torch.float64)),
        f"got {weights.tolist()}: 6 labelled pixels, 4 of class 0 and 2 of class 1 (none of class 2: "
        "weight 0) give [1.5, 3, 0]",
    )
