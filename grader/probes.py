"""Helpers shared by the hidden checks' probes (each is sent to the worker with `@uses(...)`).

They must stay self-contained: imports inside the body, no references to other module names
except ones also passed to `@uses`. Their annotations are quoted where they name more than builtins: the
worker defines these functions from their source alone, so an annotation it evaluated would need an import.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch


def seed_params(model: "torch.nn.Module", key_of: "Callable[[str], str | None] | None" = None) -> None:
    """Fill every floating tensor of `model` from a generator seeded by its (canonical) name.

    In place (normal_/uniform_ with the generator): about 4x cheaper than drawing a new tensor and
    copying it, which matters for VGG16's 134 M parameters (grading cost, not just speed)."""
    import math
    import zlib

    import torch

    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            key = key_of(name) if key_of else name
            if key is None:
                continue
            generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5, generator=generator)
            elif name.endswith("running_mean") or tensor.dim() < 2:
                # batch-norm scales around 1, biases and running means around 0
                tensor.normal_(1.0 if name.endswith(".weight") else 0.0, 0.1, generator=generator)
            else:
                fan_in = max(1, tensor[0].numel())
                tensor.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)


def backbone_keys(model: "torch.nn.Module") -> "Callable[[str], str | None]":
    """Canonical keys for a ResNet backbone: its tensors by position, whatever the module names."""
    index: dict[str, str] = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("backbone.") and tensor.is_floating_point() and ".fc." not in name:
            index[name] = f"backbone#{len(index)}"

    def key_of(name: str) -> str | None:
        if name.startswith("backbone."):
            return index.get(name)
        return name

    return key_of


def fingerprint(tensor: "torch.Tensor") -> "torch.Tensor":
    """The float64 sum and up to 4096 evenly strided elements of `tensor`: changes whenever an
    element changes value or place (a wrong reshape too), without copying large tensors."""
    import torch

    flat = tensor.detach().reshape(-1)
    stride = max(1, flat.numel() // 4096)
    # Summed in float64 a million elements at a time: 8x faster than sum(dtype=float64) on VGG's fc6
    # (the whole cast is not cache-resident), and just as exact.
    chunks = flat.split(1 << 20)  # type: ignore[no-untyped-call]  # torch's Tensor.split is unannotated
    total = sum((chunk.double().sum() for chunk in chunks), torch.zeros((), dtype=torch.float64))
    return torch.cat([total.reshape(1), flat[::stride].double()])


def make_input(shape: tuple[int, ...], seed: int) -> "torch.Tensor":
    import torch

    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
