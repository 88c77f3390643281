"""The Mask R-CNN loop: ``collate_detection``, ``build_mask_rcnn``, ``train_detection_one_epoch``,
``train_detection`` (epochs, resumable), ``predict_instances``. A detection model returns a loss dict in train mode, so ``starter.train.fit``
does not apply."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm


def collate_detection(batch: Sequence[tuple[Any, Any]]) -> tuple[tuple, tuple]:
    """DataLoader collate for detection: images differ in size, so keep lists. Returns: (images, targets)."""
    return tuple(zip(*batch))


def build_mask_rcnn(
    n_labels: int,
    *,
    coco_weights: bool = False,
    min_size: int = 800,
    max_size: int = 1333,
    detections_per_image: int = 300,
    **options: Any,
) -> nn.Module:
    """torchvision's Mask R-CNN v2 (ResNet-50 FPN) for ``n_labels`` labels, background included.

    Inputs:
        n_labels: 1 + number of instance classes.
        coco_weights: start from the COCO-trained weights (both heads' last layers replaced for
            our classes); needs the weights file (``starter.backbones.ensure_weights`` downloads it
            or says where to put it). False: every weight random (``weights=None``).
        min_size, max_size: the model's own resizing of every input (GeneralizedRCNNTransform).
        detections_per_image: at most this many instances per image (a facade can have 300 windows;
            torchvision's default is 100).
        options: further MaskRCNN arguments, e.g. rpn_post_nms_top_n_test, box_batch_size_per_image
            (fewer proposals and sampled regions: much cheaper heads, for tiny CPU runs).
    Returns:
        the model (train mode).
    Raises:
        starter.backbones.PretrainedWeightsUnavailable: coco_weights without the file.
    """
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    options = {"min_size": min_size, "max_size": max_size, "box_detections_per_img": detections_per_image, **options}
    if not coco_weights:
        return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=n_labels, **options)
    from starter.backbones import ensure_weights

    weights = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
    ensure_weights(weights)
    model = maskrcnn_resnet50_fpn_v2(weights=weights, **options)
    box_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_features, n_labels)
    mask_features = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_features, 256, n_labels)
    return model


def _target_to(target: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in target.items()}


def train_detection_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    *,
    lr_scheduler: Any = None,
    max_steps: int | None = None,
    grad_clip: float | None = 10.0,
    progress: bool = True,
) -> dict[str, float]:
    """One pass over ``loader`` (or ``max_steps`` batches) of a torchvision detection model.

    In train mode ``model(images, targets)`` returns a dict of losses (classifier, box regression,
    mask, objectness, RPN boxes); their sum is the training loss.

    Inputs:
        model: a detection model on ``device``; loader: yields (images, targets) tuples
            (``collate_detection``); optimizer: steps the model's parameters; lr_scheduler: a torch
            LR scheduler stepped after every batch (warm-up, cosine), or None; max_steps: stop after
            this many batches; grad_clip: clip the gradient norm (random-init Mask R-CNN can blow up
            early), None: no clipping.
    Returns:
        {"loss": mean total, "loss_classifier": mean, ...} over the batches seen.
    """
    device = torch.device(device)
    model.train()
    sums: dict[str, float] = {}
    n_batches = 0
    total = min(len(loader), max_steps) if max_steps is not None and hasattr(loader, "__len__") else None
    bar = tqdm(loader, total=total, desc="train", disable=not progress, leave=False)
    for step, (images, targets) in enumerate(bar):
        if max_steps is not None and step >= max_steps:
            break
        images = [image.to(device) for image in images]
        targets = [_target_to(target, device) for target in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"detection loss is {loss.item()} at step {step} ({ {k: round(v.item(), 3) for k, v in losses.items()} }):"
                " lower the learning rate or keep gradient clipping on"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        for key, value in {"loss": loss, **losses}.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        n_batches += 1
        bar.set_postfix(loss=f"{sums['loss'] / n_batches:.3f}")
    bar.close()
    if n_batches == 0:
        raise ValueError("the training loader yielded no batches (empty dataset, or max_steps=0?)")
    return {key: value / n_batches for key, value in sums.items()}


@torch.no_grad()
def predict_instances(
    model: nn.Module,
    loader,
    device: torch.device | str,
    *,
    mask_threshold: float = 0.5,
    max_batches: int | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Run a detection model in eval mode over ``loader``; everything comes back on the CPU.

    Inputs:
        model, loader (``collate_detection``), device; mask_threshold: Mask R-CNN's soft masks
        (probabilities) become binary masks at this value.
    Returns:
        (predictions, targets), one dict per image: prediction {"masks": bool (K, H, W), "scores":
        float (K,), "labels": int64 (K,), "boxes": float (K, 4)}, sorted by descending score;
        target {"masks": bool (N, H, W), "labels": int64 (N,), "boxes": float (N, 4)}.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    predictions, targets_out = [], []
    try:
        for step, (images, targets) in enumerate(tqdm(loader, desc="predict", disable=not progress, leave=False)):
            if max_batches is not None and step >= max_batches:
                break
            outputs = model([image.to(device) for image in images])
            for output, target in zip(outputs, targets):
                masks = output["masks"]
                masks = masks[:, 0] if masks.dim() == 4 else masks
                predictions.append(
                    {
                        "masks": (masks >= mask_threshold).cpu(),
                        "scores": output["scores"].float().cpu(),
                        "labels": output["labels"].cpu(),
                        "boxes": output["boxes"].float().cpu(),
                    }
                )
                targets_out.append(
                    {
                        "masks": target["masks"].bool().cpu().as_subclass(torch.Tensor),
                        "labels": target["labels"].cpu().as_subclass(torch.Tensor),
                        "boxes": target["boxes"].float().cpu().as_subclass(torch.Tensor),
                    }
                )
    finally:
        model.train(was_training)
    return predictions, targets_out


def _cosine_with_warmup(steps: int, warmup: int):
    """LambdaLR factor of step s: a linear warm-up over `warmup` steps, times a cosine decay to 0 at `steps`."""
    return lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))


def train_detection(
    model: nn.Module,
    loader,
    checkpoint_path: Path,
    *,
    epochs: int,
    lr: float,
    device: torch.device | str,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train a detection model with SGD (momentum 0.9, weight decay 1e-4), a short warm-up and cosine decay per step.

    After every epoch the model, optimizer, schedule and history are saved next to `checkpoint_path`
    (``starter.train.state_path_for``), and a run cut off earlier (e.g. a Colab disconnect) continues from
    there; at the end the weights go to `checkpoint_path`. Prints every epoch's mean losses.

    Inputs:
        model: a torchvision detection model; loader: (images, targets) batches (``collate_detection``);
        max_steps: at most this many batches per epoch (None: all).
    Returns:
        {"train_loss": mean loss per epoch, "epoch_time": seconds per epoch}.
    """
    from starter.train import state_path_for

    model.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=1e-4)
    steps = epochs * (max_steps or len(loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine_with_warmup(steps, min(200, steps // 4 + 1)))
    state_path, history, start = state_path_for(checkpoint_path), {"train_loss": [], "epoch_time": []}, 0
    if state_path.is_file():  # a run cut off earlier: continue it
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, start = state["history"], state["epoch"]
    for epoch in range(start, epochs):
        started = time.time()
        losses = train_detection_one_epoch(
            model, loader, optimizer, device, lr_scheduler=schedule, max_steps=max_steps, progress=progress
        )
        history["train_loss"].append(losses["loss"])
        history["epoch_time"].append(time.time() - started)
        print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items()))
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}
        torch.save({**state, "history": history, "epoch": epoch + 1}, state_path)
    torch.save(model.state_dict(), checkpoint_path)
    return history
