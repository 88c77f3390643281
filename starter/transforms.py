"""Joint ``(image, mask)`` transforms for semantic segmentation.

Written in the style of torchvision's ``references/segmentation/transforms.py``: every
transform is a small class whose ``__call__(image, mask)`` returns the transformed pair,
so a geometric change (resize, flip, crop, pad) is applied identically to both.

Two rules hold everywhere:

* the image is resampled bilinearly, the mask with nearest neighbour, so a mask never
  receives a label value that was not in it (no "average of window and door");
* padding fills the image with 0 and the mask with ``IGNORE_INDEX`` (255), so the loss and
  the metrics skip padded pixels.

Inputs may be PIL images (image RGB, mask mode "L"/"P" holding class indices) or tensors
(image float (3, H, W), mask int64 (H, W)). ``ToTensor`` turns PIL/NumPy pairs into tensors;
put it before ``Normalize``.

CMP Facade in the FCN assignment uses THE presets below, ``train_preset(size=S)`` and
``eval_preset(size=S)``: each image is resized so that its longest side is ``S`` (aspect ratio
kept), then padded at the bottom/right to ``S x S`` (mask padding = 255, ignored), so every
batch has one shape and no facade is distorted or cropped away.

There is no random crop or flip here on purpose: joint random augmentation is a graded exercise
(the U-Net assignment's ``random_crop_flip``). ``train_preset(size=S, augment=fn)`` takes the
notebook's own ``fn(image, mask) -> (image, mask)`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from starter.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

# An image or mask as it travels through a pipeline: PIL before ToTensor, tensor after.
ImageLike = Image.Image | torch.Tensor
Pair = tuple[ImageLike, ImageLike]
JointTransform = Callable[[ImageLike, ImageLike], Pair]

__all__ = [
    "Compose",
    "Resize",
    "ResizeLongest",
    "PadTo",
    "ToTensor",
    "Normalize",
    "denormalize",
    "train_preset",
    "eval_preset",
    "image_size",
]


# --- helpers shared by the transforms ------------------------------------------------


def image_size(image: ImageLike) -> tuple[int, int]:
    """Height and width of a PIL image or a tensor.

    Inputs:
        image: PIL image, or tensor (..., H, W).
    Returns:
        (H, W) as ints.
    """
    if isinstance(image, Image.Image):
        width, height = image.size  # PIL reports (width, height)
        return height, width
    if isinstance(image, torch.Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    raise TypeError(
        f"expected a PIL image or a torch.Tensor, got {type(image).__name__}; "
        "convert NumPy arrays with ToTensor() first"
    )


def _check_same_size(image: ImageLike, mask: ImageLike) -> None:
    if image_size(image) != image_size(mask):
        raise ValueError(
            f"image is {image_size(image)} but mask is {image_size(mask)} (H, W); "
            "a segmentation pair must have the same height and width"
        )


def _resize_image(image: ImageLike, size_hw: tuple[int, int]) -> ImageLike:
    return TF.resize(image, list(size_hw), interpolation=InterpolationMode.BILINEAR, antialias=True)


def _resize_mask(mask: ImageLike, size_hw: tuple[int, int]) -> ImageLike:
    # NEAREST_EXACT samples pixel centres like PIL's NEAREST and like bilinear's
    # align_corners=False grid, so image and mask stay aligned for tensors and PIL alike
    # (plain "nearest" on tensors is shifted by up to half a pixel).
    if isinstance(mask, torch.Tensor) and mask.ndim == 2:
        resized = TF.resize(mask[None], list(size_hw), interpolation=InterpolationMode.NEAREST_EXACT)
        return resized[0]
    return TF.resize(mask, list(size_hw), interpolation=InterpolationMode.NEAREST_EXACT)


def _pad_bottom_right(item: ImageLike, pad_bottom: int, pad_right: int, fill: int) -> ImageLike:
    if pad_bottom == 0 and pad_right == 0:
        return item
    # torchvision padding order: [left, top, right, bottom]
    return TF.pad(item, [0, 0, pad_right, pad_bottom], fill=fill)


def _as_hw(size: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"{what} must be an int or a (height, width) pair, got {size!r}")
    return int(size[0]), int(size[1])


# --- transforms ----------------------------------------------------------------------


class Compose:
    """Apply joint transforms one after the other.

    Inputs:
        transforms: sequence of callables ``t(image, mask) -> (image, mask)``.
    """

    def __init__(self, transforms: Sequence[JointTransform]):
        self.transforms = list(transforms)

    def __call__(self, image: ImageLike, mask: ImageLike) -> Pair:
        for transform in self.transforms:
            image, mask = transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(t) for t in self.transforms)
        return f"Compose([\n    {inner}\n])"


class Resize:
    """Resize image (bilinear) and mask (nearest) to a given size.

    Inputs:
        size: (H, W) for an exact output size, or an int: like torchvision, the SHORTER
            side becomes ``size`` and the aspect ratio is kept.
    """

    def __init__(self, size: int | Sequence[int]):
        self.size = size

    def _output_hw(self, height: int, width: int) -> tuple[int, int]:
        if not isinstance(self.size, int):
            return _as_hw(self.size, "Resize size")
        scale = self.size / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def __call__(self, image: ImageLike, mask: ImageLike) -> Pair:
        _check_same_size(image, mask)
        size_hw = self._output_hw(*image_size(image))
        return _resize_image(image, size_hw), _resize_mask(mask, size_hw)

    def __repr__(self) -> str:
        return f"Resize(size={self.size!r})"


class ResizeLongest:
    """Resize so that the longest side equals ``max_side``, keeping the aspect ratio.

    Inputs:
        max_side: target length of the longer of H and W (images are up- or down-scaled).
    """

    def __init__(self, max_side: int):
        self.max_side = int(max_side)

    def __call__(self, image: ImageLike, mask: ImageLike) -> Pair:
        _check_same_size(image, mask)
        height, width = image_size(image)
        scale = self.max_side / max(height, width)
        size_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
        return _resize_image(image, size_hw), _resize_mask(mask, size_hw)

    def __repr__(self) -> str:
        return f"ResizeLongest(max_side={self.max_side})"


class PadTo:
    """Pad at the bottom and right up to at least (h, w).

    Image padding is 0, mask padding is ``IGNORE_INDEX`` so padded pixels are skipped by the
    loss. A side that is already at least as long is left unchanged (crop it if needed).

    Inputs:
        h, w: minimum output height and width.
    """

    def __init__(self, h: int, w: int, *, image_fill: int = 0, mask_fill: int = IGNORE_INDEX):
        self.h, self.w = int(h), int(w)
        self.image_fill = image_fill
        self.mask_fill = mask_fill

    def __call__(self, image: ImageLike, mask: ImageLike) -> Pair:
        _check_same_size(image, mask)
        height, width = image_size(image)
        pad_bottom, pad_right = max(0, self.h - height), max(0, self.w - width)
        image = _pad_bottom_right(image, pad_bottom, pad_right, self.image_fill)
        mask = _pad_bottom_right(mask, pad_bottom, pad_right, self.mask_fill)
        return image, mask

    def __repr__(self) -> str:
        return f"PadTo(h={self.h}, w={self.w})"


class ToTensor:
    """Convert a pair to tensors.

    Inputs:
        image: PIL image (any mode; converted to RGB), uint8 array (H, W, 3), or tensor
            (3, H, W) (uint8 is scaled to [0, 1]).
        mask: PIL image of class indices (mode "L"/"P"/"I"), integer array (H, W), or tensor.
    Returns:
        image: float32 (3, H, W) in [0, 1]; mask: int64 (H, W).
    """

    def __call__(self, image, mask) -> tuple[torch.Tensor, torch.Tensor]:
        return self._image_to_tensor(image), self._mask_to_tensor(mask)

    @staticmethod
    def _image_to_tensor(image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            return TF.to_tensor(image.convert("RGB"))
        if isinstance(image, np.ndarray):
            return TF.to_tensor(image)  # HWC uint8 -> CHW float in [0, 1]
        if isinstance(image, torch.Tensor):
            if image.dtype == torch.uint8:
                return image.float().div_(255.0)
            return image.float()
        raise TypeError(f"ToTensor: unsupported image type {type(image).__name__}")

    @staticmethod
    def _mask_to_tensor(mask) -> torch.Tensor:
        if isinstance(mask, Image.Image):
            if mask.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(
                    f"mask has PIL mode {mask.mode!r}; expected a single-channel index image "
                    "(mode 'L' or 'P'). Decode colour-coded masks to indices first "
                    "(see starter.data.FolderSegmentation's palette argument)"
                )
            # np.asarray on a "P" image gives the palette indices, i.e. the class values
            return torch.from_numpy(np.asarray(mask, dtype=np.int64).copy())
        if isinstance(mask, np.ndarray):
            return torch.from_numpy(mask.astype(np.int64))
        if isinstance(mask, torch.Tensor):
            return mask.long()
        raise TypeError(f"ToTensor: unsupported mask type {type(mask).__name__}")

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """Standardise the image channels: ``(image - mean) / std``; the mask is untouched.

    Inputs:
        image: float tensor (3, H, W) in [0, 1] (put ``ToTensor`` before this).
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, image: torch.Tensor, mask: ImageLike) -> Pair:
        if not (isinstance(image, torch.Tensor) and image.is_floating_point()):
            raise TypeError("Normalize expects a float image tensor; put ToTensor() before Normalize()")
        return TF.normalize(image, self.mean, self.std), mask

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def denormalize(
    image_tensor: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Undo ``Normalize`` for plotting.

    Inputs:
        image_tensor: float (3, H, W) or (N, 3, H, W), normalised with ``mean``/``std``.
    Returns:
        float tensor of the same shape in [0, 1] (clamped), on the same device; use
        ``.permute(1, 2, 0)`` for ``plt.imshow``.
    """
    mean_t = torch.as_tensor(mean, dtype=image_tensor.dtype, device=image_tensor.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=image_tensor.dtype, device=image_tensor.device).view(-1, 1, 1)
    return (image_tensor * std_t + mean_t).clamp(0.0, 1.0)


# --- presets ---------------------------------------------------------------------------


def train_preset(*, size: int, augment: JointTransform | None = None) -> Compose:
    """Training transform: longest side -> ``size``, pad to ``size x size``, tensor, ``augment``, normalise.

    Without ``augment`` this is ``eval_preset`` (no randomness). ``augment`` runs on tensors
    after the padding, so a flip moves the padding (mask 255, ignored by loss and metrics) to
    the other side, and before ``Normalize``, so photometric changes see values in [0, 1].

    Inputs:
        size: side of the square resized and padded image.
        augment: optional joint augmentation ``augment(image, mask) -> (image, mask)`` taking
            image float32 (3, size, size) in [0, 1] and mask int64 (size, size), e.g. your own
            crop/flip function; it may change the size (a crop).
    Returns:
        Compose mapping a PIL pair to image float32 (3, h, w), mask int64 (h, w): (size, size)
        unless ``augment`` changes it.
    """
    steps: list[JointTransform] = [ResizeLongest(size), PadTo(size, size), ToTensor()]
    if augment is not None:
        if not callable(augment):
            raise TypeError(f"augment must be a callable augment(image, mask) -> (image, mask), got {augment!r}")
        steps.append(augment)
    steps.append(Normalize())
    return Compose(steps)


def eval_preset(*, size: int) -> Compose:
    """Evaluation transform: longest side -> ``size``, pad to ``size x size``, tensor, normalise.

    Inputs:
        size: side of the square output.
    Returns:
        Compose mapping a PIL pair to image float32 (3, size, size), mask int64 (size, size).
    """
    return Compose(
        [
            ResizeLongest(size),
            PadTo(size, size),
            ToTensor(),
            Normalize(),
        ]
    )
