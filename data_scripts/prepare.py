"""Steps every dataset preparation shares: atomic writes, image/mask pairs, splits and meta.json.

Everything is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file that a re-run would mistake for finished work.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from starter.common import write_atomic, write_atomically


def prepare_pair(name: str, image_src: Path, load_mask: Callable[[], np.ndarray], out_dir: Path) -> bool:
    """Copy the image to ``images/<name>.jpg`` and write ``load_mask()`` (uint8 (H, W) class
    indices) to ``masks/<name>.png``; return False when both already exist (idempotent).

    Raises ValueError when the mask and the image differ in size.
    """
    image_dst = out_dir / "images" / f"{name}.jpg"
    mask_dst = out_dir / "masks" / f"{name}.png"
    if image_dst.is_file() and mask_dst.is_file():
        return False
    mask = load_mask()
    with Image.open(image_src) as image_file:
        width, height = image_file.size  # header only, no decoding
    if mask.shape != (height, width):
        raise ValueError(f"{name}: image is {height}x{width} but its mask is {mask.shape[0]}x{mask.shape[1]}")
    write_atomically(image_dst, lambda temporary: shutil.copyfile(image_src, temporary))
    write_atomically(
        mask_dst, lambda temporary: Image.fromarray(mask.astype(np.uint8), mode="L").save(temporary, format="PNG")
    )
    return True


def write_splits_and_meta(out_dir: Path, splits: dict[str, list[str]], meta: dict) -> None:
    """``splits/<split>.txt`` (one name per line) and ``meta.json`` (with the split counts added)."""
    for split, names in splits.items():
        write_atomic(out_dir / "splits" / f"{split}.txt", "".join(f"{name}\n" for name in names))
    meta = {**meta, "counts": {split: len(names) for split, names in splits.items()}}
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
