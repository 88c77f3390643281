"""Does the starter package answer a graded unit by behaviour a generic scan cannot see?

The whole student bundle is checked in tests/test_bundle_leaks.py: every function of it plugged in as
the student's answer and graded by the hidden checks, and compared with every solution by the
similarity engine. (The name scan that used to live here passed code that answers a unit under
another name.) What stays here are probes of behaviours that no signature reveals: no starter callable
crops or flips an image and its mask at random (the joint augmentation unit), the training preset
adds no such augmentation, and `evaluate` takes its metrics from the functions it is given.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import torch

import starter

# Candidate constructor arguments for the behavioural probe of joint transforms: a crop size,
# an int size, a probability of one, no argument.
CONSTRUCTOR_ARGS = [((6, 8),), (6,), (6, 8), (1.0,), ()]
PROBE_SEEDS = range(8)


def starter_modules():
    modules = [starter]
    for info in pkgutil.walk_packages(starter.__path__, prefix="starter."):
        modules.append(importlib.import_module(info.name))
    return modules


# --- behavioural probes -------------------------------------------------------------------------


def coordinate_pair(height=10, width=14):
    """Image whose channels hold (row, column, 0.5); mask holding row * width + column."""
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    image = torch.stack([rows.float(), cols.float(), torch.full((height, width), 0.5)])
    return image, (rows * width + cols).long().contiguous()


def _takes_image_and_mask(function) -> bool:
    try:
        parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def joint_transforms(modules):
    """(name, factory) of every class with __call__(image, mask) and every function (image, mask, ...)."""
    found = {}
    for module in modules:
        for attribute, value in vars(module).items():
            if getattr(value, "__module__", None) != module.__name__ or attribute.startswith("_"):
                continue
            if inspect.isclass(value) and "__call__" in vars(value) and _takes_image_and_mask(value.__call__):
                found[f"{module.__name__}.{attribute}"] = value
            elif inspect.isfunction(value):
                names = list(inspect.signature(value).parameters)[:2]
                if len(names) == 2 and "image" in names[0] and "mask" in names[1]:
                    found[f"{module.__name__}.{attribute}"] = value
    return found


def _outputs(transform, extra_args):
    """The transform's output for each seed, or None when it does not accept a tensor pair."""
    outputs = []
    for seed in PROBE_SEEDS:
        torch.manual_seed(seed)
        image, mask = coordinate_pair()
        try:
            out = transform(image, mask, *extra_args)
        except Exception:
            return None
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            return None
        outputs.append(out)
    return outputs


def random_joint_transforms(candidates) -> tuple[list[str], int]:
    """Which candidates change a fixed image/mask pair randomly (a joint random crop or flip), and how many ran."""
    random_ones, probed = [], 0
    for name, factory in candidates.items():
        attempts = (
            [(factory(*args), ()) for args in CONSTRUCTOR_ARGS if _constructs(factory, args)]
            if inspect.isclass(factory)
            else [(factory, args) for args in CONSTRUCTOR_ARGS]
        )
        for transform, extra_args in attempts:
            outputs = _outputs(transform, extra_args)
            if outputs is None:
                continue
            probed += 1
            first_image, first_mask = outputs[0]
            if any(
                image.shape != first_image.shape
                or not torch.equal(image, first_image)
                or not torch.equal(mask, first_mask)
                for image, mask in outputs[1:]
            ):
                random_ones.append(name)
                break
    return random_ones, probed


def _constructs(factory, args) -> bool:
    try:
        factory(*args)
    except Exception:
        return False
    return True


def test_no_starter_callable_crops_or_flips_image_and_mask_at_random():
    """Does any starter class or function transform an image/mask pair randomly (the joint augmentation unit)?"""
    candidates = joint_transforms(starter_modules())
    random_ones, probed = random_joint_transforms(candidates)
    assert probed >= 3, f"the probe ran on too few joint transforms to mean anything: {sorted(candidates)}"
    assert random_ones == []


def test_train_preset_without_augment_is_deterministic():
    """Does the training preset, given no augment, give the same pair whatever the seed (no built-in crop/flip)?"""
    from PIL import Image

    from starter.transforms import train_preset

    image = Image.fromarray((torch.arange(30 * 20 * 3) % 251).reshape(30, 20, 3).to(torch.uint8).numpy())
    mask = Image.fromarray((torch.arange(30 * 20) % 7).reshape(30, 20).to(torch.uint8).numpy())
    outputs = []
    for seed in PROBE_SEEDS:
        torch.manual_seed(seed)
        outputs.append(train_preset(size=16)(image, mask))
    assert all(torch.equal(o[0], outputs[0][0]) and torch.equal(o[1], outputs[0][1]) for o in outputs[1:])


def test_the_random_transform_probe_finds_a_planted_crop_and_flip():
    """Would the probe catch a random joint crop (a class) and a random flip (a function)?"""

    class WindowCrop:
        def __init__(self, size):
            self.size = size

        def __call__(self, image, mask):
            h, w = self.size
            top = int(torch.randint(0, image.shape[-2] - h + 1, ()))
            left = int(torch.randint(0, image.shape[-1] - w + 1, ()))
            return image[:, top : top + h, left : left + w], mask[top : top + h, left : left + w]

    def maybe_mirror(image, mask, p=0.5):
        return (image.flip(-1), mask.flip(-1)) if torch.rand(()) < p else (image, mask)

    random_ones, probed = random_joint_transforms({"WindowCrop": WindowCrop, "maybe_mirror": maybe_mirror})
    assert probed >= 2 and random_ones == ["WindowCrop", "maybe_mirror"]


def test_evaluate_takes_its_metrics_from_the_functions_it_is_given():
    """Does starter.train.evaluate use the confusion and mIoU functions passed in (not its own)?"""
    from starter.train import evaluate

    n_class = 3
    model = torch.nn.Conv2d(3, n_class, 1)
    batches = [(torch.randn(2, 3, 4, 5), torch.randint(0, n_class, (2, 4, 5))) for _ in range(2)]
    planted = torch.arange(n_class * n_class).reshape(n_class, n_class)

    def confusion_fn(pred, target, classes):
        return planted

    seen = []

    def miou_fn(conf):
        seen.append(conf.clone())
        return 0.125

    result = evaluate(
        model, batches, "cpu", n_class=n_class, confusion_fn=confusion_fn, miou_fn=miou_fn, progress=False
    )
    assert result["miou"] == 0.125
    assert torch.equal(result["confusion"], 2 * planted)
    assert len(seen) == 1 and torch.equal(seen[0], 2 * planted)
