"""Example submissions of the patches assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once. HOSTILE maps a grade_id to a cell that attacks the grader instead, drawn from
the corpus of attack kinds in segkit/proof/hostile.py (`attack`).
"""

from segkit.proof.hostile import attack

BUGS = {
    # Positions written (x, y) instead of (y, x), so windows are cut transposed. predict_full uses
    # extract_patches: this bug must cost patch_extract only (fair units), not patch_predict.
    "patch_extract": [("torch.tensor([(y, x) for y in", "torch.tensor([(x, y) for y in")],
    # Ignored pixels counted as labelled.
    "patch_weights": [("labels.numel() / counts.clamp(min=1)", "masks.numel() / counts.clamp(min=1)")],
    # Overlaps summed instead of averaged.
    "patch_stitch": [("return total / count.clamp(min=1)", "return total")],
    # model.eval() forgotten: batch norm uses batch statistics, dropout stays on.
    "patch_predict": [("    model.eval()\n", "")],
    # Rows and columns swapped (rows = prediction).
    "patch_confusion": [
        ("index = target[valid] * n_class + pred[valid]", "index = pred[valid] * n_class + target[valid]")
    ],
    # Precision and recall swapped (row and column sums mixed up).
    "patch_prf": [
        (
            "precision = true_positive / predicted  # 0/0 -> NaN\n    recall = true_positive / actual",
            "precision = true_positive / actual  # 0/0 -> NaN\n    recall = true_positive / predicted",
        )
    ],
    # Dilated branches padded by 1 instead of by their rate: the maps shrink (or vanish) with the rate.
    # DeepLabV3Plus uses ASPP: with this ASPP it breaks too, but the bug must cost patch_aspp only
    # (fair units: patch_deeplab is checked on the reference ASPP).
    "patch_aspp": [("padding=dilation * (kernel_size // 2)", "padding=kernel_size // 2")],
    # layer4 dilated but still strided: output stride 32 instead of 16.
    "patch_deeplab": [("                module.stride = (1, 1)\n", "")],
}

HOSTILE = {
    "patch_extract": attack(
        "forge_equality",
        "extract_patches(image, size, stride)"
        " -> (torch.zeros(1).as_subclass(AlwaysEqual), torch.zeros(1, 2, dtype=torch.int64).as_subclass(AlwaysEqual))",
    ),
    "patch_weights": attack("steal_and_forge", "class_weights(masks, n_class, ignore_index=255)"),
    "patch_stitch": attack(
        "caller_frames",
        "stitch_patches(patch_logits, positions, out_size) -> torch.zeros(patch_logits.shape[1], *out_size)",
    ),
    "patch_predict": attack("exit_worker", "predict_full(model, image, size, stride, batch_size=16)"),
    "patch_confusion": attack(
        "output_flood", "confusion_matrix(pred, target, n_class, ignore_index=255)", megabytes=1024
    ),
    "patch_prf": attack("memory_bomb", "precision_recall_f1(conf)"),
    "patch_aspp": attack(
        "forge_equality", "class ASPP -> torch.zeros(x.shape[0], 256, *x.shape[2:]).as_subclass(AlwaysEqual)"
    ),
    "patch_deeplab": attack("global_forward_hook", "class DeepLabV3Plus"),
}
