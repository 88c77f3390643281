"""Example submissions of the instance segmentation assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once. HOSTILE maps a grade_id to a cell that attacks the grader instead.
"""

from segkit.proof.hostile import attack

BUGS = {
    # torchvision.ops.masks_to_boxes' convention: x2/y2 = the last column/row, not one past it.
    "inst_targets": [("int(cols.max()) + 1, int(rows.max()) + 1", "int(cols.max()), int(rows.max())")],
    # 8-connectivity (OpenCV's default): windows touching at a corner merge.
    "inst_components": [
        (
            "ndimage.label(class_mask.cpu().numpy().astype(bool))",
            "ndimage.label(class_mask.cpu().numpy().astype(bool), structure=np.ones((3, 3)))",
        )
    ],
    # A component without a peak of its own is forgotten: its pixels end up in no instance.
    "inst_watershed": [("    markers[lone] = n_markers + components[lone]\n", "")],
    # The union counts the intersection twice (a Dice-like denominator). match_instances uses mask_iou:
    # this bug must cost inst_mask_iou only (fair units), not inst_match.
    "inst_mask_iou": [
        (
            "union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection",
            "union = a.sum(1)[:, None] + b.sum(1)[None, :]",
        )
    ],
    # Predictions matched in their input order instead of by descending score.
    "inst_match": [
        ("for p in torch.sort(scores, descending=True, stable=True).indices.tolist():", "for p in range(len(scores)):")
    ],
    # Raw precision instead of the interpolated envelope.
    "inst_ap": [("envelope = precision.flip(0).cummax(0).values.flip(0)", "envelope = precision")],
    # Rounded instead of floored: a pixel 2.83 pixels deep (a diagonal) lands a level too high.
    "dwt_energy": [("np.floor(distance / step)", "np.round(distance / step)")],
    # The class weights forgotten: a plain mean over the object pixels (the rare deep levels barely count).
    "dwt_loss": [
        (
            "return torch.nn.functional.cross_entropy(scores, target, weight=weights.to(logits))",
            "return torch.nn.functional.cross_entropy(scores, target)",
        )
    ],
    # 8-connected seeds (skimage.measure.label's and OpenCV's default): seeds touching at a corner merge.
    "dwt_instances": [
        (
            "ndimage.label(mask & (energy >= cut_level))  # 4-connectivity",
            "ndimage.label(mask & (energy >= cut_level), structure=np.ones((3, 3)))",
        )
    ],
}

# Each unit's attack is one kind of the corpus (EXAMPLE_ATTACKS in segkit/proof/hostile.py).
HOSTILE = {
    "inst_targets": attack(
        "forge_equality",
        "instance_targets(objects, label_mask, classes)"
        ' -> dict.fromkeys(("boxes", "labels", "masks"), torch.zeros(1).as_subclass(AlwaysEqual))',
    ),
    "inst_components": attack("steal_and_forge", "split_instances(class_mask, min_area=1)"),
    "inst_watershed": attack("caller_frames", "watershed_instances(class_mask, min_distance=3)"),
    "inst_mask_iou": attack(
        "output_flood", "mask_iou(a, b) -> torch.full((a.shape[0], b.shape[0]), float('nan'))", megabytes=1024
    ),
    "inst_match": attack("memory_bomb", "match_instances(pred_masks, scores, gt_masks, iou_threshold=0.5)"),
    "inst_ap": attack("equal_number", "average_precision(tp, scores, n_gt) -> EqualFloat(1.0)"),
    "dwt_energy": attack("steal_and_forge", "energy_targets(instance_ids, n_levels, step=1.0) -> instance_ids"),
    "dwt_loss": attack(
        "forge_equality",
        "watershed_energy_loss(logits, levels, object_mask, weights=None)"
        " -> (logits.sum() * 0).as_subclass(AlwaysEqual)",
    ),
    "dwt_instances": attack(
        "kill_parent",
        "energy_instances(levels, object_mask, cut_level) -> torch.ones(1, *object_mask.shape, dtype=torch.bool)",
    ),
}
