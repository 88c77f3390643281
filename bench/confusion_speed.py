"""Evaluation speed: the vectorised confusion matrix (bincount) vs a per-pixel Python loop.

    python bench/confusion_speed.py [--images 4] [--size 128]

Both compute the same 12-class confusion matrix over the same predictions (checked equal);
the loop is how many student reports compute IoU. Prints pixels/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from grader.assignments import load_assignment
from grader.runner import reference_namespace


def loop_confusion(pred, target, n_class, ignore_index=255):
    conf = [[0] * n_class for _ in range(n_class)]
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()):
        if t != ignore_index and 0 <= t < n_class:
            conf[t][p] += 1
    return torch.tensor(conf)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    confusion_matrix = reference_namespace(load_assignment("fcn")).namespace["confusion_matrix"]
    generator = torch.Generator().manual_seed(0)
    shape = (args.images, args.size, args.size)
    pred = torch.randint(0, 12, shape, generator=generator)
    target = torch.randint(0, 12, shape, generator=generator)
    target[torch.rand(shape, generator=generator) < 0.05] = 255
    pixels = pred.numel()

    confusion_matrix(pred, target, 12)  # warm-up
    start = time.perf_counter()
    repeats = 20
    for _ in range(repeats):
        fast = confusion_matrix(pred, target, 12)
    vectorised = repeats * pixels / (time.perf_counter() - start)
    start = time.perf_counter()
    slow = loop_confusion(pred, target, 12)
    looped = pixels / (time.perf_counter() - start)
    assert torch.equal(fast, slow), "the two confusion matrices differ"
    print(
        f"confusion matrix over {args.images}x{args.size}x{args.size} pixels, 12 classes: "
        f"vectorised {vectorised / 1e6:8.1f} Mpixel/s | per-pixel loop {looped / 1e6:8.3f} Mpixel/s | "
        f"ratio {vectorised / looped:.0f}x"
    )


if __name__ == "__main__":
    main()
