"""starter.synthetic, the torch-free generator of the synthetic scenes: its samples stay the same bits
(prepared folders and published figures depend on them) and the torch Dataset gives exactly its samples."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from starter.constants import IGNORE_INDEX
from starter.data import SyntheticSegmentation
from starter.synthetic import SyntheticScenes

# sha256 of image bytes then mask bytes, recorded from the generator as it was inside starter.data before it
# moved to starter.synthetic: (n_class, (H, W), seed, ignore_border, index) -> digest.
STORED_DIGESTS = {
    (5, (32, 40), 3, 0, 0): "9a3f6961289a5e9499314ee4824ad7be875897b0dbd404019786475aee1261fe",
    (5, (32, 40), 3, 0, 7): "30dbac35847c01fae5087d2ccd3205772ad861b43e37d730c49ac51a3317cc2f",
    (12, (48, 64), 7, 2, 3): "f528fa3a4a5756697f54fd2b3c91dbda515136e63a9626085461905a17c7d05d",
    (40, (17, 23), 11, 1, 19): "0c1de21ff30f1a11838c8a6eda76207f4038a6615012162c44902fab88cf4820",
}


def sample_digest(image: np.ndarray, mask: np.ndarray) -> str:
    assert image.dtype == np.uint8 and mask.dtype == np.uint8 and image.shape == (*mask.shape, 3)
    return hashlib.sha256(image.tobytes() + mask.tobytes()).hexdigest()


@pytest.mark.parametrize("setting", sorted(STORED_DIGESTS))
def test_samples_keep_their_recorded_bits(setting):
    """Does SyntheticScenes draw, for a few settings (ignore border included), the very bytes recorded before
    the generator left starter.data, and does the torch SyntheticSegmentation give those bytes too?"""
    n_class, size, seed, ignore_border, index = setting
    scenes = SyntheticScenes(index + 1, n_class, size, seed=seed, ignore_border=ignore_border)
    assert sample_digest(*scenes.generate(index)) == STORED_DIGESTS[setting]
    dataset = SyntheticSegmentation(index + 1, n_class, size, seed=seed, ignore_border=ignore_border)
    assert sample_digest(*dataset.generate(index)) == STORED_DIGESTS[setting]


def test_the_dataset_keeps_the_generator_attributes():
    """Does SyntheticSegmentation expose the generator's palette, classes, n_class, size, seed and length,
    and turn sample i into the transformed image and the int64 mask of the same labels?"""
    scenes = SyntheticScenes(3, 4, (16, 20), seed=5, ignore_border=1, classes=("bg", "a", "b", "c"))
    dataset = SyntheticSegmentation(3, 4, (16, 20), seed=5, ignore_border=1, classes=("bg", "a", "b", "c"))
    for name in ("palette", "classes", "n_class", "size", "seed", "ignore_border"):
        assert getattr(dataset, name) == getattr(scenes, name), name
    assert len(dataset) == len(scenes) == 3 and dataset.palette[0] == (89, 89, 97)
    image, mask = dataset[2]
    assert tuple(image.shape) == (3, 16, 20) and str(mask.dtype) == "torch.int64"
    np.testing.assert_array_equal(mask.numpy(), scenes.generate(2)[1])
    assert (mask.numpy()[0] == IGNORE_INDEX).all()
    with pytest.raises(IndexError):
        scenes.generate(3)
