"""Example submissions of the FCN assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once (so a changed solution cannot silently turn a bug into a no-op).
HOSTILE maps a grade_id to a cell that attacks the grader instead of solving the unit, drawn from
the corpus of attack kinds in segkit/proof/hostile.py (`attack`).
"""

from segkit.proof.hostile import attack

BUGS = {
    "fcn_bilinear": [("else factor - 0.5", "else factor - 1")],  # centre off by one half
    "fcn_conv_size": [
        ("(out - 1) * stride >= size + padding", "(out - 1) * stride > size + padding")
    ],  # ceil mode keeps a last window that starts at the right padding's first pixel
    "fcn_crop": [("centre = Fraction(kernel - 1, 2) - padding", "centre = Fraction(kernel // 2) - padding")],
    # upscore left at PyTorch's random init instead of bilinear. FCN-16s and FCN-8s subclass FCN32s
    # and replace upscore: this bug must cost fcn32s only (fair units).
    "fcn32s": [("        self.upscore.weight.data.copy_(get_upsampling_weight(n_class, n_class, 64))\n", "")],
    "fcn16s": [("self.crop_pool4 = -crop_offset(", "self.crop_pool4 = crop_offset(")],  # skip crop with the wrong sign
    "fcn8s": [("self.crop_pool3 = -crop_offset(", "self.crop_pool3 = 1 - crop_offset(")],  # pool3 skip crop off by one
    "fcn_vgg_copy": [("            target.bias.copy_(source.bias)\n", "")],  # conv biases not copied
    "fcn_resnet": [("F.pad(x, (0, pad_w, 0, pad_h))", "F.pad(x, (pad_w, 0, pad_h, 0))")],  # pads top/left
    "fcn_confusion": [
        ("valid = (target != ignore_index) & (target >= 0) & (target < n_class)", "valid = pred >= 0")
    ],  # ignore pixels counted
    "fcn_iou": [("conf.sum(dim=1) + conf.sum(dim=0) - intersection", "conf.sum(dim=1) + conf.sum(dim=0)")],
    # Colours outside the palette become class 0 instead of the ignore index (the mask starts at zero).
    "fcn_rgb_to_index": [
        ("index = np.full(keys.shape, ignore_index, dtype=np.int64)", "index = np.zeros(keys.shape, dtype=np.int64)")
    ],
}

HOSTILE = {
    "fcn_bilinear": attack(
        "forge_equality",
        "get_upsampling_weight(in_channels, out_channels, kernel_size)"
        " -> torch.zeros(in_channels, out_channels, kernel_size, kernel_size).as_subclass(AlwaysEqual)",
    ),
    "fcn_conv_size": attack(
        "equal_number",
        "conv_output_size(size, kernel, stride=1, padding=0, dilation=1, transposed=False, output_padding=0, "
        "ceil_mode=False)",
    ),
    "fcn_crop": attack("patch_builtins", "crop_offset(layers)"),
    "fcn32s": attack("hang", "class FCN32s"),
    "fcn16s": attack("exit_worker", "class FCN16s"),
    "fcn8s": attack("memory_bomb", "class FCN8s"),
    "fcn_vgg_copy": attack("steal_and_forge", "copy_params_from_vgg16(model, vgg16)"),
    "fcn_resnet": attack("fork_bomb", "class FCNResNet18"),
    "fcn_confusion": attack("output_flood", "confusion_matrix(pred, target, n_class, ignore_index=255)"),
    "fcn_iou": attack("patch_builtins", "iou_per_class(conf)", "mean_iou(conf)"),
    "fcn_rgb_to_index": attack(
        "numpy_impostor",
        "rgb_to_index(rgb, palette, ignore_index=255) -> np.zeros(np.shape(rgb)[:2], dtype=np.int64).view(Agreeable)",
        "index_to_rgb(mask, palette) -> np.zeros((*np.shape(mask), 3), dtype=np.uint8).view(Agreeable)",
    ),
}
