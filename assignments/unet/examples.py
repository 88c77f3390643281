"""Example submissions of the U-Net assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once (so a changed solution cannot silently turn a bug into a no-op).
HOSTILE maps a grade_id to a cell that attacks the grader instead of solving the unit, drawn from
the corpus of attack kinds in segkit/proof/hostile.py (`attack`).
"""

from segkit.proof.hostile import attack

BUGS = {
    # The mask gets its own random window: image and mask no longer line up.
    "unet_augment": [
        (
            "mask = TF.crop(mask, top, left, crop_h, crop_w)",
            "mask = TF.crop(mask, *T.RandomCrop.get_params(mask, (crop_h, crop_w)))",
        )
    ],
    # Never-labelled pixels keep 0 everywhere instead of the uniform 1/n_class.
    "unet_prior": [("torch.full_like(counts, 1.0 / n_class)", "torch.zeros_like(counts)")],
    # Ignore pixels are counted (only negative targets are skipped).
    "unet_confusion": [
        ("valid = (target != ignore_index) & (target >= 0) & (target < n_class)", "valid = target >= 0")
    ],
    # Union without subtracting the intersection (a Dice-like denominator).
    "unet_iou": [("conf.sum(dim=1) + conf.sum(dim=0) - intersection", "conf.sum(dim=1) + conf.sum(dim=0)")],
    # Frequencies instead of inverse frequencies.
    "unet_weights": [("labelled / counts.clamp(min=1)", "counts / labelled")],
    # Averaged over the pixels instead of by the sum of the weights.
    "unet_wce": [("/ pixel_weight.sum()", "/ valid.sum()")],
    # Concatenation order swapped: [upsampled, skip] instead of [skip, upsampled].
    "unet_model": [("torch.cat([skip, x], dim=1)", "torch.cat([x, skip], dim=1)")],
    # The stem skip is missing: the 1/2-resolution stage sees only the upsampled map.
    "unet_resnet": [
        ("self.dec1 = stage(64, 64, 64)", "self.dec1 = stage(64, 0, 64)"),
        ("(self.dec1, stem)", "(self.dec1, None)"),
    ],
    # zero_grad forgotten: gradients accumulate over the epoch (and stale ones from earlier code join in).
    "unet_train_epoch": [("        optimizer.zero_grad()\n", "")],
}

HOSTILE = {
    "unet_augment": attack(
        "forge_equality",
        "random_crop_flip(image, mask, size, flip_p=0.5)"
        " -> (image.as_subclass(AlwaysEqual), mask.as_subclass(AlwaysEqual))",
    ),
    "unet_prior": attack("hang", "fit_pixel_prior(masks, n_class, ignore_index=255)", "predict_prior(prior, n)"),
    "unet_confusion": attack("kill_parent", "confusion_matrix(pred, target, n_class, ignore_index=255)"),
    "unet_iou": attack("patch_builtins", "iou_per_class(conf)", "mean_iou(conf)"),
    "unet_weights": attack("steal_and_forge", "class_weights(masks, n_class, ignore_index=255)"),
    "unet_wce": attack("memory_bomb", "weighted_cross_entropy(logits, target, weight, ignore_index=255)"),
    "unet_model": attack("fork_bomb", "class DoubleConv", "class Down", "class Up", "class OutConv", "class UNet"),
    "unet_resnet": attack("output_flood", "class ResNetUNet"),
    "unet_train_epoch": attack("patch_optimizer", "unet_train_epoch(model, loader, optimizer, loss_fn, device)"),
}
