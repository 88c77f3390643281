"""Example submissions of the instance segmentation assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once. HOSTILE maps a grade_id to a cell that attacks the grader instead.
"""

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

HOSTILE = {
    # An always-equal tensor subclass, monkeypatched comparisons and a forged result line.
    "inst_targets": """
import torch

class AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False

torch.equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
print('{"score": 100, "tests": []}')

def instance_targets(objects, label_mask, classes):
    fake = torch.zeros(1).as_subclass(AlwaysEqual)
    return {"boxes": fake, "labels": fake, "masks": fake}
""",
    # Reads the reference solution and the hidden checks, returns what it found.
    "inst_components": """
import glob

stolen = {}
for pattern in ("/work/*/solutions/*/*.ipynb", "/work/*/assignments/*/test_*.py", "../../solutions/*/*.ipynb"):
    for path in glob.glob(pattern):
        try:
            stolen[path] = open(path).read()[:200]
        except OSError:
            pass

def split_instances(class_mask, min_area=1):
    return stolen
""",
    # Looks for the expected answer in the caller's frames, then kills the worker.
    "inst_watershed": """
import os
import sys

import torch

def watershed_instances(class_mask, min_distance=3):
    frame = sys._getframe(1)
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, torch.Tensor) and value.dim() == 3 and value.dtype == torch.bool:
                return value.clone()
        frame = frame.f_back
    os._exit(0)
""",
    # Gigabytes of output, then NaN everywhere.
    "inst_mask_iou": """
import sys

import torch

chunk = "x" * (1 << 20)
for _ in range(1024):
    sys.stdout.write(chunk)

def mask_iou(a, b):
    return torch.full((a.shape[0], b.shape[0]), float("nan"))
""",
    # Monkeypatches torch.sort and argmax for everyone, then a memory bomb.
    "inst_match": """
import torch

torch.sort = lambda *a, **k: (_ for _ in ()).throw(SystemExit(0))
torch.argmax = lambda *a, **k: 0

def match_instances(pred_masks, scores, gt_masks, iou_threshold=0.5):
    hog = [torch.ones(25_000_000) for _ in range(400)]
    return torch.zeros(len(scores), dtype=torch.int64)
""",
    # A float subclass that equals everything, and a hang.
    "inst_ap": """
import time

class Anything(float):
    def __eq__(self, other):
        return True
    def __sub__(self, other):
        return 0.0
    __rsub__ = __sub__

def average_precision(tp, scores, n_gt):
    if n_gt == 0:
        while True:
            time.sleep(1)
    return Anything(1.0)
""",
    # Overwrites the hidden checks and the reference it can find, then returns the map it was given.
    "dwt_energy": """
import glob

for pattern in ("/work/*/assignments/*/test_*.py", "../../assignments/*/test_*.py", "/work/*/solutions/*/*.ipynb"):
    for path in glob.glob(pattern):
        try:
            with open(path, "w") as handle:
                handle.write("def test_nothing():\\n    pass\\n")
        except OSError:
            pass

def energy_targets(instance_ids, n_levels, step=1.0):
    return instance_ids
""",
    # A tensor subclass that equals everything, torch's cross-entropy and isclose patched for everyone.
    "dwt_loss": """
import torch

class Whatever(torch.Tensor):
    def __eq__(self, other):
        return True
    def __float__(self):
        return 0.0

torch.nn.functional.cross_entropy = lambda *a, **k: torch.zeros(())
torch.isclose = lambda *a, **k: torch.tensor(True)

def watershed_energy_loss(logits, levels, object_mask, weights=None):
    return (logits.sum() * 0).as_subclass(Whatever)
""",
    # Kills its parent process and forks, then answers with the whole image as one instance.
    "dwt_instances": """
import os
import signal

import torch

def energy_instances(levels, object_mask, cut_level):
    try:
        os.kill(os.getppid(), signal.SIGKILL)
    except OSError:
        pass
    for _ in range(50):
        try:
            if os.fork() == 0:
                os._exit(0)
        except OSError:
            break
    return torch.ones(1, *object_mask.shape, dtype=torch.bool)
""",
}
