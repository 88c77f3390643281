"""Steps every dataset preparation shares: atomic writes, image/mask pairs, splits and meta.json.

Everything is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file that a re-run would mistake for finished work.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
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


# --- label images coded in "binary" colours ----------------------------------------------------
# Vaihingen's and DeepGlobe's official label colours use only 0 and 255 in each channel. The helpers
# below serve exactly such palettes and refuse any other: a general colour -> class lookup is a graded
# exercise of the FCN notebook (rgb_to_index), so the kit ships none.


def _binary_codes(palette: Sequence[Sequence[int]]) -> list[int]:
    """3-bit code (r, g, b each 0 or 1) of every palette colour; ValueError for any other channel value."""
    codes = []
    for colour in palette:
        if len(colour) != 3 or any(int(v) not in (0, 255) for v in colour):
            raise ValueError(
                f"palette colour {tuple(colour)} is not made of 0s and 255s; these helpers only serve such palettes"
            )
        codes.append(sum(1 << (2 - i) for i, v in enumerate(colour) if int(v) == 255))
    if len(set(codes)) != len(codes):
        raise ValueError("the palette lists a colour twice")
    return codes


def snap_to_binary_colours(rgb: np.ndarray, threshold: int = 128) -> np.ndarray:
    """Set every channel to 0 or 255 (values >= ``threshold`` become 255).

    For label images whose official colours use only 0 and 255 per channel but whose files hold values
    in between (lossy compression, resampling), e.g. some DeepGlobe masks.

    Inputs:
        rgb: uint8 (H, W, 3) (an alpha channel is dropped).
    Returns:
        uint8 (H, W, 3) with values 0 and 255 only.
    """
    return np.where(np.asarray(rgb)[..., :3] >= threshold, 255, 0).astype(np.uint8)


def binary_colours_to_index(rgb: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """Class ids of a label image coded in a palette of 0/255 colours.

    Inputs:
        rgb: uint8 (H, W, 3) (an alpha channel is dropped).
        palette: RGB triple of class 0, 1, ...; every channel 0 or 255 (anything else: ValueError).
    Returns:
        uint8 (H, W): the class whose colour the pixel has exactly; ``ignore_index`` for a colour that
        is not in the palette or has a channel other than 0 and 255.
    """
    table = np.full(8, ignore_index, dtype=np.uint8)
    table[_binary_codes(palette)] = np.arange(len(palette), dtype=np.uint8)
    channels = np.asarray(rgb)[..., :3]
    code = ((channels[..., 0] == 255) << 2) | ((channels[..., 1] == 255) << 1) | (channels[..., 2] == 255)
    exact = ((channels == 0) | (channels == 255)).all(axis=-1)
    return np.where(exact, table[code], ignore_index).astype(np.uint8)


# --- archives downloaded by hand -------------------------------------------------------------------


def verify_manual_archive(path: Path) -> str:
    """Check an archive the user downloaded by hand against the SHA-256 kept beside it (``<archive>.sha256``).

    No checksum is published for such archives, so the first call computes it, prints it and keeps it
    (trust on first use, as ``data_scripts.download`` does for downloads); every later call compares. A
    mismatch raises ``ChecksumError`` and leaves the file alone (it was not the kit's download to delete).

    Returns:
        The archive's SHA-256 (hex).
    """
    from data_scripts.download import ChecksumError, sha256_of

    digest = sha256_of(path)
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        tokens = sidecar.read_text().split()
        if tokens and tokens[0].lower() != digest:
            raise ChecksumError(
                f"{path.name}: SHA-256 is {digest}, but {sidecar.name} says {tokens[0]} (the archive this folder was "
                f"first prepared from). Download it again, or delete {sidecar.name} if the new file is the right one"
            )
        return digest
    write_atomic(sidecar, f"{digest}  {path.name}\n")  # sha256sum format
    print(f"{path.name}: SHA-256 {digest} (no published checksum; kept in {sidecar.name}, verified on later runs)")
    return digest
