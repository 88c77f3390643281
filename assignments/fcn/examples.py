"""Example submissions of the FCN assignment: one typical bug per unit, one attack per unit.

BUGS maps a grade_id to (old, new) text replacements applied to the solution cell; each must
match exactly once (so a changed solution cannot silently turn a bug into a no-op).
HOSTILE maps a grade_id to a cell that attacks the grader instead of solving the unit.
"""

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
    # An int subclass that claims to equal everything, and a patched operator.index.
    "fcn_conv_size": """
import operator


class Sneaky(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


operator.index = lambda value: value


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1, transposed=False, output_padding=0,
                     ceil_mode=False):
    return Sneaky(0)
""",
    # Returns the FCN-32s answer for everything and patches the builtins the probes could use.
    "fcn_crop": """
import builtins

builtins.isinstance = lambda *args: True
builtins.int = lambda *args: 19


def crop_offset(layers):
    return 19.0
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
    # A fast always-equal result, patched clocks and comparisons, and index_to_rgb answering black.
    "fcn_rgb_to_index": """
import time

import numpy as np

time.perf_counter = lambda: 0.0
time.monotonic = lambda: 0.0
np.array_equal = lambda *a, **k: True


class Agreeable(np.ndarray):
    def __eq__(self, other):
        return np.ones(self.shape, dtype=bool)

    __ne__ = lambda self, other: np.zeros(self.shape, dtype=bool)


def rgb_to_index(rgb, palette, ignore_index=255):
    return np.zeros(np.shape(rgb)[:2], dtype=np.int64).view(Agreeable)


def index_to_rgb(mask, palette):
    return np.zeros((*np.shape(mask), 3), dtype=np.uint8).view(Agreeable)
""",
}
