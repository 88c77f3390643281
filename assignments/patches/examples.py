"""Example submissions of the patches assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once. HOSTILE maps a grade_id to a cell that attacks the grader instead.
"""

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
    # Always-equal tensors, monkeypatched comparisons and a forged result line.
    "patch_extract": """
import torch

class AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False

torch.equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
print('{"score": 100, "tests": []}')

def extract_patches(image, size, stride):
    return torch.zeros(1).as_subclass(AlwaysEqual), torch.zeros(1, 2, dtype=torch.int64).as_subclass(AlwaysEqual)
""",
    # Read the reference solution / hidden checks and return what was found.
    "patch_weights": """
import glob

stolen = {}
for pattern in ("/work/*/solutions/*/*.ipynb", "/work/*/grader/checks/*.py", "../../solutions/*/*.ipynb"):
    for path in glob.glob(pattern):
        try:
            stolen[path] = open(path).read()[:200]
        except OSError:
            pass

def class_weights(masks, n_class, ignore_index=255):
    return stolen
""",
    # Reads the expected answer out of the caller's stack frame (the probe's local variables).
    "patch_stitch": """
import sys

import torch

def stitch_patches(patch_logits, positions, out_size):
    frame = sys._getframe(1)
    while frame is not None:
        for name in ("full", "expected", "image", "tensor"):
            value = frame.f_locals.get(name)
            if isinstance(value, torch.Tensor):
                return value.clone()
        frame = frame.f_back
    return torch.zeros(patch_logits.shape[1], *out_size)
""",
    # Monkeypatch nn.Module.train/eval so the recorder always looks right, then kill the worker.
    "patch_predict": """
import os
import torch.nn as nn

nn.Module.train = lambda self, mode=True: self
nn.Module.eval = lambda self: self

def predict_full(model, image, size, stride, batch_size=16):
    os._exit(0)
""",
    # Gigabytes of output, then an always-equal object.
    "patch_confusion": """
import sys

chunk = "x" * (1 << 20)
for _ in range(1024):
    sys.stdout.write(chunk)

class Anything:
    def __eq__(self, other):
        return True

def confusion_matrix(pred, target, n_class, ignore_index=255):
    return Anything()
""",
    # Memory bomb and a SystemExit.
    "patch_prf": """
import torch

def precision_recall_f1(conf):
    hog = [torch.ones(25_000_000) for _ in range(400)]
    raise SystemExit(0)
""",
    # A module that lies about itself: a state dict of non-tensors, comparisons patched to succeed, and an
    # output tensor subclass that equals anything.
    "patch_aspp": """
import torch
import torch.nn as nn


class Agreeable(torch.Tensor):
    def __eq__(self, other):
        return torch.ones((), dtype=torch.bool)

    def __ne__(self, other):
        return torch.zeros((), dtype=torch.bool)


torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True


class ASPP(nn.Module):
    def __init__(self, in_channels, out_channels=256, rates=(6, 12, 18)):
        super().__init__()
        self.out_channels = out_channels

    def state_dict(self, *args, **kwargs):
        return {"branches.0.0.weight": "trust me"}

    def forward(self, x):
        return torch.zeros(x.shape[0], self.out_channels, *x.shape[2:]).as_subclass(Agreeable)
""",
    # A global forward hook that zeroes every module's output (hoping that zeros compare equal), and a
    # model that is nothing but an identity.
    "patch_deeplab": """
import torch
import torch.nn as nn

nn.modules.module.register_module_forward_hook(lambda module, inputs, output: output * 0)


class DeepLabV3Plus(nn.Module):
    def __init__(self, n_class, weights=None):
        super().__init__()
        self.backbone = nn.Identity()
        self.n_class = n_class

    def forward(self, x):
        return self.backbone(x)[:, :1].expand(-1, self.n_class, -1, -1)
""",
}
