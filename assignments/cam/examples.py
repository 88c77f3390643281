"""Example submissions of the CAM assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once (so a changed solution cannot silently turn a bug into a no-op).
HOSTILE maps a grade_id to a cell that attacks the grader instead of solving the unit, drawn from
the corpus of attack kinds in segkit/proof/hostile.py (`attack`).
EXTRA_BUGS holds further typical mutants (same format) that must also lose their unit; the
example builder uses BUGS only (one bug per unit), the kit's tests may grade these as well.
"""

from segkit.proof.hostile import attack

BUGS = {
    # "Inference mode" forced inside: right in eval mode, wrong logits and a changed mode in training mode.
    "cam_forward": [("    try:\n        logits = net(x)", "    net.eval()\n    try:\n        logits = net(x)")],
    # Softmax over the batch axis: for (1, C) logits every probability is 1.
    "cam_top1": [("probs = F.softmax(logits, dim=1)", "probs = F.softmax(logits, dim=0)")],
    # (height, width) handed to OpenCV, which reads it as (width, height).
    "cam_compute": [("cv2.resize(cam_img, (size[1], size[0]))", "cv2.resize(cam_img, tuple(size))")],
    # Heat map and image weights swapped.
    "cam_overlay": [
        (
            "heatmap.astype(np.float32) * alpha + image_bgr.astype(np.float32) * beta",
            "heatmap.astype(np.float32) * beta + image_bgr.astype(np.float32) * alpha",
        )
    ],
    # Max pooling where the network averages: not the input of net.fc. cam_features uses
    # forward_with_features: cam_forward's bug above must cost cam_forward only (fair units).
    "cam_features": [("maps.mean(dim=(2, 3))", "maps.amax(dim=(2, 3))")],
}

EXTRA_BUGS = {
    # Max-only scaling: negative CAM values wrap around in the uint8 cast.
    "cam_compute": [("    cam = cam - cam.min()\n", "")],
    # eval() forgotten: batch norm uses batch statistics (features depend on the batch). Not in BUGS: in the
    # all-bugs example, cam_forward's bug (net.eval() inside forward_with_features) would mask it.
    "cam_features": [("    net.eval()  # running batch-norm statistics", "    # running batch-norm statistics")],
}

HOSTILE = {
    "cam_forward": attack("snoop_proc", "forward_with_features(net, x)"),
    # Odd class counts get an int subclass, even ones a NumPy subclass posing as numpy.
    "cam_top1": attack(
        "numpy_impostor",
        "get_cls_pred(logits)"
        " -> (AgreeableInt(0) if logits.shape[1] % 2 else np.zeros((), dtype=np.int64).view(Agreeable),"
        " np.ones((), dtype=np.float64).view(Agreeable))",
    ),
    "cam_compute": attack(
        "numpy_impostor",
        "return_cam(feature_conv, weight_fc, idx, size=(256, 256))"
        " -> cv2.resize(np.zeros((1, 1), np.uint8), size[::-1])",
    ),
    "cam_overlay": attack("hang", "overlay_cam(image_bgr, cam, alpha=0.3, beta=0.5)"),
    "cam_features": attack("deep_recursion", "cam_features(net, loader)"),
}
