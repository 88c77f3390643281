"""COCO's run-length encoding of binary masks (column-major runs, the first run counts zeros), compressed
as COCO's string: what ``instances/<split>.json`` stores and pycocotools reads. NumPy only."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _counts_to_string(counts: Sequence[int]) -> str:
    """COCO's rleToString: each count (minus the count two places back, from the fourth on) as
    little-endian 5-bit groups with a continuation bit, offset by 48 into printable ASCII."""
    characters = []
    for index, count in enumerate(counts):
        value = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            characters.append(chr((group | (0x20 if more else 0)) + 48))
    return "".join(characters)


def _string_to_counts(text: str) -> list[int]:
    """COCO's rleFrString (the inverse of _counts_to_string)."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_encode_crop(crop: Any, top: int, left: int, height: int, width: int) -> dict[str, Any]:
    """COCO compressed RLE of a (height, width) mask that is 0 outside ``crop`` placed at (top, left).

    Cheaper than ``rle_encode`` on the full mask for small objects in large images.

    Inputs:
        crop: (h, w) bool/0-1 array; top, left: its position; height, width: the full mask's size.
    Returns:
        {"size": [height, width], "counts": str}, as pycocotools.mask.encode writes it.
    """
    crop = np.asarray(crop, dtype=bool)
    crop_height, crop_width = crop.shape
    if top < 0 or left < 0 or top + crop_height > height or left + crop_width > width:
        raise ValueError(f"a {crop.shape} crop at ({top}, {left}) does not fit a {height}x{width} mask")
    strip = np.zeros((height, crop_width), dtype=bool)  # the columns the crop spans, full height
    strip[top : top + crop_height] = crop
    flat = strip.ravel(order="F")  # COCO runs go down the columns
    if flat.size == 0:
        counts = [height * width]
    else:
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
        if flat[0]:
            counts.insert(0, 0)  # the first run counts zeros
        counts[0] += left * height  # the columns left of the strip
        after = (width - left - crop_width) * height
        if len(counts) % 2:  # ends with zeros: the columns right of the strip extend that run
            counts[-1] += after
        elif after:
            counts.append(after)
    return {"size": [int(height), int(width)], "counts": _counts_to_string(counts)}


def rle_encode(mask: Any) -> dict[str, Any]:
    """Inputs: (H, W) bool/0-1 array or tensor. Returns: COCO compressed RLE {"size": [H, W], "counts": str}."""
    if hasattr(mask, "detach"):  # a torch tensor (this module does not import torch)
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode takes one (H, W) mask, got shape {mask.shape}")
    return rle_encode_crop(mask, 0, 0, *mask.shape)


def _rle_counts(rle: Mapping[str, Any]) -> list[int]:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return _string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]


def _decode_columns(counts: Sequence[int], height: int, first: int, stop: int) -> np.ndarray:
    """Columns first..stop-1 of an RLE mask as a (height, stop - first) bool array."""
    ends = np.cumsum(np.asarray(counts, dtype=np.int64))
    starts = ends - np.asarray(counts, dtype=np.int64)
    low, high = first * height, stop * height
    ones_start = np.clip(starts[1::2], low, high) - low
    ones_end = np.clip(ends[1::2], low, high) - low
    change = np.zeros(high - low + 1, dtype=np.int64)
    np.add.at(change, ones_start, 1)
    np.add.at(change, ones_end, -1)
    return np.cumsum(change[:-1]).astype(bool).reshape(stop - first, height).T


def rle_decode(rle: Mapping[str, Any], box: Sequence[float] | None = None) -> np.ndarray:
    """Decode COCO RLE (compressed string or uncompressed list of counts).

    Inputs:
        rle: {"size": [H, W], "counts": str | list[int]}.
        box: optional COCO bbox [x, y, w, h] known to hold every pixel of the mask: only its
            columns are decoded (much faster for small objects in large images).
    Returns:
        (H, W) uint8 array of 0/1.
    """
    height, width = (int(v) for v in rle["size"])
    counts = _rle_counts(rle)
    if sum(counts) != height * width:
        raise ValueError(f"RLE counts add up to {sum(counts)}, not {height}x{width}")
    first, stop = 0, width
    if box is not None:
        first, stop = max(0, int(math.floor(box[0]))), min(width, int(math.ceil(box[0] + box[2])))
    mask = np.zeros((height, width), dtype=np.uint8)
    if stop > first:
        mask[:, first:stop] = _decode_columns(counts, height, first, stop)
    return mask
