"""Estimated time per epoch on a Colab T4, from the CPU epochs `make results` measured.

    python bench/colab_estimate.py            # after make results; prints a table, writes build/results/colab-estimate.json

No GPU was measured for these figures (the estimate exists because none was lent). Method, per
experiment of the runs folder:

1. count the floating-point operations of one training image (forward + backward ~ 3x forward,
   torch.utils.flop_counter) of the solution's model at the cpu profile's size and at the full
   profile's size;
2. the CPU's effective rate = (train images x training FLOPs + val images x forward FLOPs) of one
   cpu-profile epoch / the measured seconds per epoch;
3. the T4 estimate = the same epoch count at the full profile's size and split / an assumed
   effective T4 rate, `T4_EFFECTIVE_TFLOPS` (about 10 % of its 65 TFLOP/s float16 tensor-core
   peak, what convolutional networks typically sustain in mixed-precision training). Expect the
   truth within a factor of 2; replace it with a measured GPU epoch when one is available.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from grader.assignments import load_assignment  # noqa: E402
from grader.runner import reference_namespace  # noqa: E402
from starter.runs import RunStore  # noqa: E402

T4_EFFECTIVE_TFLOPS = 6.0
RUNS = REPO_ROOT / "build" / "results" / "runs"
OUT = REPO_ROOT / "build" / "results" / "colab-estimate.json"
N_CLASS = 12
# Images per epoch: the cpu profile's subset (train, val) and the course's full CMP split.
CPU_EPOCH = {"fcn": (64, 30), "unet": (96, 30)}
FULL_EPOCH = (500, 30)


def _models():
    """experiment name -> (assignment, builds the solution's model, cpu size (h, w), full size (h, w))."""
    fcn = reference_namespace(load_assignment("fcn")).namespace
    unet = reference_namespace(load_assignment("unet")).namespace
    return {
        "FCN-32s scratch": ("fcn", lambda: fcn["FCN32s"](N_CLASS), (128, 128), (256, 256)),
        "FCN-8s scratch": ("fcn", lambda: fcn["FCN8s"](N_CLASS), (128, 128), (256, 256)),
        "ResNet-18 FCN-16s scratch": (
            "fcn",
            lambda: fcn["FCNResNet18"](N_CLASS, "16s", weights=None),
            (128, 128),
            (256, 256),
        ),
        "U-Net": ("unet", lambda: unet["UNet"](N_CLASS), (64, 64), (224, 288)),
        "ResNet-UNet scratch": ("unet", lambda: unet["ResNetUNet"](N_CLASS), (64, 64), (224, 288)),
    }


def forward_flops(model: torch.nn.Module, size: tuple[int, int]) -> float:
    """FLOPs of one forward pass of one image (batch 1, eval mode so BatchNorm needs no batch)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, *size))
    return float(counter.get_total_flops())


def main() -> int:
    rows = {}
    for name, (assignment, build, cpu_size, full_size) in _models().items():
        store = RunStore(RUNS / assignment)
        result = store.load_result(name) if (RUNS / assignment).is_dir() else None
        if result is None or not result.seconds_per_epoch == result.seconds_per_epoch:
            print(f"{name}: no measured cpu epoch in {RUNS / assignment} (run make results first)")
            continue
        model = build()
        cpu_f, full_f = forward_flops(model, cpu_size), forward_flops(model, full_size)
        n_train, n_val = CPU_EPOCH[assignment]
        cpu_epoch = n_train * 3 * cpu_f + n_val * cpu_f
        full_epoch = FULL_EPOCH[0] * 3 * full_f + FULL_EPOCH[1] * full_f
        cpu_rate = cpu_epoch / result.seconds_per_epoch
        rows[name] = {
            "gflop_per_training_image_full": 3 * full_f / 1e9,
            "cpu_seconds_per_epoch_measured": result.seconds_per_epoch,
            "cpu_effective_gflops": cpu_rate / 1e9,
            "cpu_seconds_per_full_epoch_estimated": full_epoch / cpu_rate,
            "t4_seconds_per_full_epoch_estimated": full_epoch / (T4_EFFECTIVE_TFLOPS * 1e12),
        }
        r = rows[name]
        print(
            f"{name:>26}: {r['gflop_per_training_image_full']:6.1f} GFLOP/training image at {full_size}, "
            f"CPU {r['cpu_effective_gflops']:5.1f} GFLOP/s effective ({result.seconds_per_epoch:.0f} s/epoch measured), "
            f"full epoch: CPU ~{r['cpu_seconds_per_full_epoch_estimated'] / 60:.0f} min, "
            f"T4 ~{r['t4_seconds_per_full_epoch_estimated']:.0f} s (estimated)"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"t4_effective_tflops": T4_EFFECTIVE_TFLOPS, "rows": rows}, indent=1))
    print(f"wrote {OUT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
