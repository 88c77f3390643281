"""Training throughput of the solution FCN-8s, UNet and ResNet-UNet: starter.fit's settings vs a
plain batch-1 fp32 loop.

    python bench/train_speed.py [--size 128] [--steps 3] [--batch 4] [--models fcn8s,unet,resnet_unet]

Both loops run forward + backward + SGD step on the same random images in the same process.
"fit settings" = batch `--batch`, channels_last, and AMP (bfloat16/float16) on CUDA; "baseline" =
batch 1, fp32, contiguous (how the original course notebooks trained). Prints images/s of each
and their ratio, on CPU and, when available, on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from grader.assignments import load_assignment
from grader.runner import reference_namespace


def images_per_second(model, device, *, batch, size, steps, channels_last, amp):
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        images = images.to(memory_format=torch.channels_last)
    targets = torch.randint(0, 9, (batch, size, size), device=device)
    use_amp = amp and device.type == "cuda"
    dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)

    def step():
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast("cuda", dtype=dtype) if use_amp else contextlib.nullcontext()
        with autocast:
            loss = loss_fn(model(images), targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    step()  # warm-up (allocator, cudnn autotuning)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


MODELS = {  # name -> (assignment, builder from the solution namespace)
    "fcn8s": ("fcn", lambda ns: ns["FCN8s"](12)),
    "unet": ("unet", lambda ns: ns["UNet"](9)),
    "resnet_unet": ("unet", lambda ns: ns["ResNetUNet"](9)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"forward+backward+SGD step, {args.size}x{args.size} images, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    for model_name in args.models.split(","):
        assignment, build = MODELS[model_name]
        namespace = reference_namespace(load_assignment(assignment)).namespace
        for device in devices:
            steps = args.steps if device.type == "cpu" else args.steps * 10
            torch.manual_seed(0)
            fit_rate = images_per_second(
                build(namespace), device, batch=args.batch, size=args.size, steps=steps, channels_last=True, amp=True
            )
            torch.manual_seed(0)
            base_rate = images_per_second(
                build(namespace), device, batch=1, size=args.size, steps=steps, channels_last=False, amp=False
            )
            name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
            print(
                f"{model_name:>12} on {name}: fit settings (batch {args.batch}, channels_last, AMP on CUDA) "
                f"{fit_rate:7.2f} img/s | baseline batch-1 fp32 {base_rate:7.2f} img/s | ratio {fit_rate / base_rate:.2f}x"
            )


if __name__ == "__main__":
    main()
