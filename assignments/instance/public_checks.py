"""Public self-checks of the instance segmentation assignment (see starter.checks).

Small cases built from the assignment text only; the hidden checks test more cases.
"""

import math

import torch

from starter.checks.core import expect as _expect
from starter.checks.core import expect_differentiable as _expect_differentiable
from starter.checks.core import register as _register


def _boxes_of(shape, *boxes):
    """A bool (len(boxes), H, W) stack of rectangles given as (top, left, bottom, right)."""
    rows, cols = torch.arange(shape[0])[:, None], torch.arange(shape[1])[None, :]
    return torch.stack(
        [(rows >= top) & (rows < bottom) & (cols >= left) & (cols < right) for top, left, bottom, right in boxes]
    )


@_register("inst_targets")
def _check_targets(instance_targets):
    # 4 x 6 facade: class 2 (window) at rows 0-1, columns 1-2; class 3 (door) at rows 2-3, columns 4-5,
    # of which the rectangle below covers only column 4.
    label_mask = torch.ones(4, 6, dtype=torch.int64)
    label_mask[0:2, 1:3] = 2
    label_mask[2:4, 4:6] = 3
    objects = [
        {"label": 2, "box": (0.1, 0.1, 0.6, 0.6)},  # columns 1..3, rows 0..1: the window's pixels
        {"label": 5, "box": (0.0, 0.0, 1.0, 1.0)},  # a class without instances: skipped
        {"label": 3, "box": (0.6, 0.4, 0.8, 1.0)},  # columns 4..4, rows 2..3
        {"label": 2, "box": (0.6, 0.6, 0.9, 0.9)},  # a window rectangle holding no window pixel: dropped
    ]
    target = instance_targets(objects, label_mask, [2, 3])
    _expect(
        isinstance(target, dict) and {"boxes", "labels", "masks"} <= set(target),
        "return a dict with boxes, labels, masks",
    )
    boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
    _expect(
        isinstance(masks, torch.Tensor) and masks.dtype == torch.uint8 and tuple(masks.shape) == (2, 4, 6),
        f"masks should be uint8 (2, 4, 6) (two instances kept), got {getattr(masks, 'dtype', None)} "
        f"{tuple(getattr(masks, 'shape', ()))}",
    )
    _expect(
        isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.tolist() == [1, 2],
        f"labels should be int64 [1, 2] (1 + position in classes), got {labels}",
    )
    _expect(
        isinstance(boxes, torch.Tensor) and boxes.dtype == torch.float32 and tuple(boxes.shape) == (2, 4),
        "boxes should be float32 (2, 4)",
    )
    _expect(
        boxes.tolist() == [[1.0, 0.0, 3.0, 2.0], [4.0, 2.0, 5.0, 4.0]],
        f"boxes should be [[1, 0, 3, 2], [4, 2, 5, 4]] (tight, x2 = last column + 1), got {boxes.tolist()}",
    )
    expected_door = torch.zeros(4, 6, dtype=torch.uint8)
    expected_door[2:4, 4] = 1
    _expect(torch.equal(masks[1], expected_door), "the door's mask should be its pixels inside its rectangle only")
    empty = instance_targets([], label_mask, [2, 3])
    _expect(
        tuple(empty["boxes"].shape) == (0, 4)
        and tuple(empty["labels"].shape) == (0,)
        and tuple(empty["masks"].shape) == (0, 4, 6),
        "without instances return boxes (0, 4), labels (0,) and masks (0, H, W)",
    )


@_register("inst_components")
def _check_components(split_instances):
    class_mask = torch.zeros(6, 8, dtype=torch.bool)
    class_mask[0:2, 0:2] = True  # area 4
    class_mask[2, 2] = True  # touches the first only at a corner: its own component, area 1
    class_mask[3:6, 4:8] = True  # area 12
    masks = split_instances(class_mask, 1)
    _expect(
        isinstance(masks, torch.Tensor) and masks.dtype == torch.bool and tuple(masks.shape) == (3, 6, 8),
        f"expected a bool (3, 6, 8) tensor (4-connectivity: a corner does not connect), got "
        f"{getattr(masks, 'dtype', None)} {tuple(getattr(masks, 'shape', ()))}",
    )
    _expect([int(m.sum()) for m in masks] == [12, 4, 1], "components should come largest first")
    _expect(len(split_instances(class_mask, 4)) == 2, "min_area=4 keeps components of 4 pixels and more")
    _expect(
        tuple(split_instances(torch.zeros(3, 3, dtype=torch.bool), 1).shape) == (0, 3, 3),
        "an empty map gives (0, H, W)",
    )


@_register("inst_watershed")
def _check_watershed(watershed_instances):
    class_mask = torch.zeros(24, 40, dtype=torch.bool)
    class_mask[2:17, 2:17] = True
    class_mask[2:17, 22:37] = True
    class_mask[8:11, 17:22] = True  # a thin neck joins the two squares
    masks = watershed_instances(class_mask, 3)
    _expect(isinstance(masks, torch.Tensor) and masks.dtype == torch.bool, "return a bool tensor (K, H, W)")
    _expect(tuple(masks.shape[1:]) == (24, 40), f"masks should be (K, 24, 40), got {tuple(masks.shape)}")
    _expect(bool((masks.sum(0) <= 1).all()), "the instances must not overlap")
    _expect(torch.equal(masks.any(0), class_mask), "together the instances must cover exactly the class pixels")
    _expect(len(masks) == 2, f"two squares joined by a thin neck should give 2 instances, got {len(masks)}")
    rectangle = torch.zeros(20, 40, dtype=torch.bool)
    rectangle[3:13, 2:36] = True
    count = len(watershed_instances(rectangle, 3))
    _expect(count == 1, f"one rectangle should give 1 instance (its ridge of equal peaks is one marker), got {count}")


@_register("inst_mask_iou")
def _check_mask_iou(mask_iou):
    a = _boxes_of((4, 4), (0, 0, 2, 2), (0, 0, 0, 0))
    b = _boxes_of((4, 4), (0, 0, 2, 4), (0, 0, 0, 0))
    iou = mask_iou(a, b)
    _expect(
        isinstance(iou, torch.Tensor) and tuple(iou.shape) == (2, 2) and iou.is_floating_point(),
        "mask_iou of (2, H, W) and (2, H, W) masks should be a float (2, 2) tensor",
    )
    _expect(
        abs(float(iou[0, 0]) - 0.5) < 1e-6, f"a 2x2 square inside a 2x4 box has IoU 4/8 = 0.5, got {float(iou[0, 0])}"
    )
    _expect(not torch.isnan(iou).any() and float(iou[1, 1]) == 0.0, "two empty masks have IoU 0 (not NaN)")
    _expect(tuple(mask_iou(a[:0], b).shape) == (0, 2), "no masks on one side gives an (0, M) tensor")


@_register("inst_match")
def _check_match(match_instances):
    gt = _boxes_of((10, 10), (0, 0, 4, 4), (5, 5, 9, 9))
    pred = _boxes_of((10, 10), (0, 0, 4, 4), (0, 0, 4, 3), (5, 5, 9, 8), (7, 0, 9, 2))
    scores = torch.tensor([0.2, 0.9, 0.8, 0.7])
    matched = match_instances(pred, scores, gt, 0.5)
    _expect(
        isinstance(matched, torch.Tensor) and matched.dtype == torch.int64 and tuple(matched.shape) == (4,),
        "return an int64 tensor (N,), one entry per prediction",
    )
    _expect(
        matched.tolist() == [-1, 0, 1, -1],
        f"expected [-1, 0, 1, -1] (the higher-scored prediction 1 takes ground truth 0 first, prediction 0 "
        f"finds it taken), got {matched.tolist()}",
    )
    _expect(match_instances(pred, scores, gt[:0], 0.5).tolist() == [-1] * 4, "no ground truth: every entry -1")


@_register("inst_ap")
def _check_ap(average_precision):
    ap = average_precision(torch.tensor([True, False, True]), torch.tensor([0.9, 0.8, 0.7]), 4)
    _expect(type(ap) is float, f"return a Python float, got {type(ap).__name__}")
    # recall 1/4 at precision 1, then 2/4 at precision 2/3: AP = 1/4 * 1 + 1/4 * 2/3
    _expect(abs(ap - (0.25 + 0.25 * 2 / 3)) < 1e-6, f"expected 0.4167, got {ap:.4f}")
    ap = average_precision(torch.tensor([False, True, True]), torch.tensor([0.1, 0.9, 0.5]), 2)
    _expect(abs(ap - 1.0) < 1e-6, f"sorted by score, both true positives come first: AP 1.0, got {ap:.4f}")
    # precision 1, 1/2, 1/3, 1/2, 3/5: the envelope lifts the 2nd and 3rd true positives to 3/5
    ap = average_precision(torch.tensor([True, False, False, True, True]), torch.linspace(1, 0.5, 5), 3)
    _expect(
        abs(ap - (1 + 0.6 + 0.6) / 3) < 1e-6,
        f"expected (1 + 3/5 + 3/5) / 3 = 0.7333 (interpolated precision: the best at this recall or beyond), got {ap:.4f}",
    )
    zero = average_precision(torch.tensor([True]), torch.tensor([0.5]), 0)
    _expect(zero == 0.0 and not math.isnan(zero), "with no ground truth the AP is 0.0")


@_register("dwt_energy")
def _check_energy(energy_targets):
    # A lone 5 x 8 window in the middle of a 9 x 12 facade (the example of the text).
    ids = torch.zeros(9, 12, dtype=torch.int64)
    ids[2:7, 2:10] = 4
    levels = energy_targets(ids, 8, 1.0)
    _expect(
        isinstance(levels, torch.Tensor) and levels.dtype == torch.int64 and tuple(levels.shape) == (9, 12),
        f"return an int64 (H, W) tensor, got {getattr(levels, 'dtype', type(levels).__name__)} "
        f"{tuple(getattr(levels, 'shape', ()))}",
    )
    _expect(int(levels[0, 0]) == 0 and int(levels[1].abs().sum()) == 0, "the background's level is 0")
    _expect(
        levels[2, 2:10].tolist() == [1] * 8 and levels[3, 3:9].tolist() == [2] * 6,
        "step 1: the window's outer ring (d = 1) is at level 1, the next ring at 2",
    )
    _expect(levels[4, 4:8].tolist() == [3] * 4, "the middle of the middle row is 3 pixels from the background: level 3")
    _expect(int(energy_targets(ids, 3, 1.0).max()) == 2, "levels are capped at n_levels - 1")
    coarse = energy_targets(ids, 8, 2.0)
    _expect(
        int(coarse[2, 5]) == 0 and int(coarse[3, 5]) == 1 and int(coarse[4, 5]) == 1,
        "step 2: floor(d / 2): the outer ring (d = 1) is at level 0, d = 2 and 3 at level 1",
    )
    # Two windows touching along a side: each one's pixels next to the other are at d = 1.
    touching = torch.zeros(7, 10, dtype=torch.int64)
    touching[1:6, 1:5] = 1
    touching[1:6, 5:9] = 2
    _expect(
        energy_targets(touching, 8, 1.0)[3].tolist() == [0, 1, 2, 2, 1, 1, 2, 2, 1, 0],
        "another instance counts as outside: two touching windows each get a boundary where they meet",
    )
    # A window cut by the image's edge: the edge is its boundary.
    edge = torch.zeros(5, 6, dtype=torch.int64)
    edge[:, :3] = 1
    _expect(
        energy_targets(edge, 8, 1.0)[2, :4].tolist() == [1, 2, 1, 0],
        "pixels outside the image count as outside the instance: the column at the image's edge is at d = 1",
    )


@_register("dwt_loss")
def _check_loss(watershed_energy_loss):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, requires_grad=True)
    levels = torch.randint(0, 3, (2, 4, 5))
    objects = torch.zeros(2, 4, 5, dtype=torch.bool)
    objects[:, 1:3, 1:4] = True
    levels[~objects] = 255  # outside the object the levels are meaningless
    weights = torch.tensor([1.0, 2.0, 4.0])
    loss = watershed_energy_loss(logits, levels, objects, weights)
    _expect(
        isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.is_floating_point(),
        "return a float scalar tensor (shape ())",
    )
    nll = -torch.log_softmax(logits.detach(), 1).permute(0, 2, 3, 1)[objects]
    target = levels[objects]
    w = weights[target]
    expected = float((w * nll[torch.arange(len(target)), target]).sum() / w.sum())
    _expect(
        abs(float(loss.detach()) - expected) < 1e-5,
        f"with given weights: sum(w[y] * cross-entropy) / sum(w[y]) over the object pixels = {expected:.4f}, "
        f"got {float(loss.detach()):.4f}",
    )
    _expect_differentiable(loss, "the energy loss")
    loss.backward()
    _expect(
        logits.grad is not None and float(logits.grad[:, :, 0].abs().sum()) == 0,
        "no gradient may reach pixels outside the object",
    )
    counts = torch.bincount(target, minlength=3).float()
    inverse = torch.where(counts > 0, 1 / counts.clamp(min=1), torch.zeros(3))
    w = inverse[target]
    expected = float((w * nll[torch.arange(len(target)), target]).sum() / w.sum())
    loss = watershed_energy_loss(logits, levels, objects)
    _expect(
        abs(float(loss.detach()) - expected) < 1e-5,
        f"weights=None: w_k = 1 / (object pixels at level k) gives {expected:.4f}, got {float(loss.detach()):.4f}",
    )
    empty = watershed_energy_loss(logits, levels, torch.zeros_like(objects))
    _expect(
        isinstance(empty, torch.Tensor) and float(empty.detach()) == 0.0 and empty.requires_grad,
        "without object pixels return 0 as a scalar still connected to logits (never NaN)",
    )


@_register("dwt_instances")
def _check_energy_instances(energy_instances):
    # Two touching 5 x 4 windows, with the levels of the text (step 1), and a 1-pixel-thin sliver.
    levels = torch.tensor(
        [
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 1, 1, 1, 1, 0],
            [0, 1, 2, 2, 1, 1, 2, 2, 1, 0],
            [0, 1, 2, 2, 1, 1, 2, 2, 1, 0],
            [0, 1, 2, 2, 1, 1, 2, 2, 1, 0],
            [0, 1, 1, 1, 1, 1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        ]
    )
    objects = levels > 0
    masks = energy_instances(levels, objects, 2)
    _expect(
        isinstance(masks, torch.Tensor) and masks.dtype == torch.bool and tuple(masks.shape[1:]) == (8, 10),
        "return a bool tensor (K, H, W)",
    )
    _expect(len(masks) == 2, f"cut at level 2, the two windows give two seeds: expected 2 instances, got {len(masks)}")
    _expect(bool((masks.sum(0) <= 1).all()), "the instances must not overlap")
    _expect(
        torch.equal(masks.any(0), objects & (torch.arange(8)[:, None] < 7)),
        "together the instances must cover the object pixels of the components that hold a seed (the sliver "
        "in the last row has none: leave it out)",
    )
    left = torch.zeros(8, 10, dtype=torch.bool)
    left[1:6, 1:5] = True
    _expect(
        any(int((m & left).sum()) >= 16 and int((m & ~left).sum()) <= 4 for m in masks),
        "one instance should be (nearly) the left window",
    )
    _expect(
        len(energy_instances(levels, objects, 1)) == 2,
        "cut at level 1 the windows and the sliver are one "
        "component each, the sliver a seed of its own: expected 2 instances",
    )
    _expect(
        tuple(energy_instances(levels, objects, 3).shape) == (0, 8, 10),
        "no pixel at the cut level or above: no instance, a (0, H, W) tensor",
    )
    _expect(
        len(energy_instances(levels * 2, torch.zeros_like(objects), 1)) == 0,
        "pixels outside object_mask never seed, whatever their level",
    )
