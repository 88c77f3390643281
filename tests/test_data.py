"""Tests of the joint transforms and the datasets in starter.data."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from starter import transforms as T
from starter.constants import CMP_CLASSES, ENV_DATA, IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from starter.data import CMPFacade, FolderSegmentation, SyntheticSegmentation, data_root

# --- helpers -----------------------------------------------------------------------------


def _label_of(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The label the coordinate test pairs carry at (row, col)."""
    return (3 * cols + 5 * rows) % 12


def coordinate_pair(height: int = 40, width: int = 56) -> tuple[Image.Image, Image.Image]:
    """Image whose red = column and green = row, mask = _label_of(row, col)."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols, rows, np.full_like(rows, 77)], axis=-1).astype(np.uint8)
    return Image.fromarray(image), Image.fromarray(_label_of(rows, cols).astype(np.uint8))


def as_tensor_pair(image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    return T.ToTensor()(image, mask)


def assert_pair_consistent(image: torch.Tensor, mask: torch.Tensor) -> None:
    """Every labelled pixel's mask must match the coordinates its image pixel encodes."""
    assert image.shape[1:] == mask.shape
    cols = (image[0] * 255).round().long().numpy()
    rows = (image[1] * 255).round().long().numpy()
    labelled = mask.numpy() != IGNORE_INDEX
    assert labelled.any()
    np.testing.assert_array_equal(mask.numpy()[labelled], _label_of(rows, cols)[labelled])


def block_pair(height: int = 64, width: int = 64, block: int = 8) -> tuple[Image.Image, Image.Image, np.ndarray]:
    """Blocks of constant class; each class has its own colour (returned as the palette)."""
    rows, cols = np.mgrid[0:height, 0:width]
    labels = ((rows // block) * 5 + (cols // block) * 3) % 10
    palette = np.array([[25 * c, 255 - 20 * c, (70 * c) % 256] for c in range(10)], dtype=np.uint8)
    return Image.fromarray(palette[labels]), Image.fromarray(labels.astype(np.uint8)), palette


def pil_and_tensor(pair):
    """Both input kinds of the same pair, for parametrised checks."""
    image, mask = pair
    return [(image, mask), as_tensor_pair(image, mask)]


# --- geometric transforms keep image and mask aligned ------------------------------------


@pytest.mark.parametrize("kind", ["pil", "tensor"])
def test_pad_to_fills_bottom_right_only(kind):
    pair = pil_and_tensor(coordinate_pair(10, 12))[kind == "tensor"]
    image, mask = T.Compose([T.PadTo(15, 20), T.ToTensor()])(*pair)
    assert mask.shape == (15, 20)
    assert (mask[:10, :12] != IGNORE_INDEX).all()
    assert (mask[10:] == IGNORE_INDEX).all() and (mask[:, 12:] == IGNORE_INDEX).all()
    assert (image[:, 10:] == 0).all() and (image[:, :, 12:] == 0).all()
    assert_pair_consistent(image, mask)
    unchanged_image, unchanged_mask = T.Compose([T.PadTo(5, 5), T.ToTensor()])(*pair)
    assert unchanged_mask.shape == (10, 12)


@pytest.mark.parametrize("kind", ["pil", "tensor"])
@pytest.mark.parametrize("out_hw", [(40, 48), (100, 90)])
def test_resize_uses_nearest_for_mask_and_keeps_alignment(kind, out_hw):
    image_in, mask_in, palette = block_pair()
    pair = pil_and_tensor((image_in, mask_in))[kind == "tensor"]
    image, mask = T.Compose([T.Resize(out_hw), T.ToTensor()])(*pair)
    assert image.shape == (3, *out_hw) and mask.shape == out_hw and mask.dtype == torch.int64
    # Nearest neighbour: no label value that was not in the input.
    assert set(mask.unique().tolist()) <= set(np.unique(np.asarray(mask_in)).tolist())
    # Aligned: inside a block (3x3 neighbourhood of one label) the bilinear colour is that label's colour.
    labels = mask.numpy()
    padded = np.pad(labels, 1, mode="edge")
    neighbourhood_constant = np.all(
        [
            padded[1 + dr : 1 + dr + labels.shape[0], 1 + dc : 1 + dc + labels.shape[1]] == labels
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
        ],
        axis=0,
    )
    colours = (image.permute(1, 2, 0).numpy() * 255)[neighbourhood_constant]
    expected = palette[labels[neighbourhood_constant]].astype(np.float64)
    assert neighbourhood_constant.mean() > 0.3
    assert np.abs(colours - expected).max() < 3.0


def _exact_ties(n_in: int, n_out: int) -> np.ndarray:
    """Output indices whose source position (d + 0.5) * n_in / n_out falls on a pixel edge."""
    return ((2 * np.arange(n_out) + 1) * n_in) % (2 * n_out) == 0


def test_resize_gives_the_same_mask_for_pil_and_tensor_inputs():
    rows, cols = np.mgrid[0:64, 0:64]
    mask_in = Image.fromarray(((rows % 8) * 16 + cols % 16).astype(np.uint8))  # neighbours differ
    image_in = Image.new("RGB", (64, 64))
    from_pil = T.Compose([T.Resize((40, 52)), T.ToTensor()])(image_in, mask_in)[1].numpy()
    from_tensor = T.Resize((40, 52))(*as_tensor_pair(image_in, mask_in))[1].numpy()
    # Both sample pixel centres; they may only differ where a centre sits exactly between
    # two source pixels (PIL rounds down, torch up) - equally near, equally aligned.
    tie = _exact_ties(64, 40)[:, None] | _exact_ties(64, 52)[None, :]
    assert (from_pil == from_tensor).mean() > 0.9
    assert np.all((from_pil == from_tensor) | tie)


def test_resize_int_sets_shorter_side_and_resize_longest_keeps_aspect():
    image, mask = coordinate_pair(40, 56)
    assert T.image_size(T.Resize(20)(image, mask)[1]) == (20, 28)
    assert T.image_size(T.ResizeLongest(28)(image, mask)[0]) == (20, 28)
    assert T.image_size(T.ResizeLongest(112)(image, mask)[1]) == (80, 112)  # upscales too
    tall_image, tall_mask = as_tensor_pair(*coordinate_pair(50, 20))
    resized_image, resized_mask = T.ResizeLongest(25)(tall_image, tall_mask)
    assert resized_image.shape == (3, 25, 10) and resized_mask.shape == (25, 10)


def test_transforms_reject_mismatched_pairs():
    image, _ = coordinate_pair(10, 12)
    _, mask = coordinate_pair(10, 13)
    with pytest.raises(ValueError, match="same height and width"):
        T.Resize((5, 5))(image, mask)


# --- tensor conversion and normalisation -------------------------------------------------


def test_to_tensor_types_ranges_and_palette_masks():
    labels = np.array([[0, 3], [11, 255]], dtype=np.uint8)
    palette_mask = Image.frombytes("P", (2, 2), labels.tobytes())
    palette_mask.putpalette([200, 10, 10] * 256)  # colours must not leak into the indices
    grey = Image.fromarray(np.array([[0, 255], [128, 64]], dtype=np.uint8))
    image, mask = T.ToTensor()(grey, palette_mask)
    assert image.dtype == torch.float32 and image.shape == (3, 2, 2)
    assert image.max().item() == 1.0 and image.min().item() == 0.0
    assert mask.dtype == torch.int64 and mask.tolist() == labels.tolist()

    array_image = np.full((2, 2, 3), 51, dtype=np.uint8)
    image, mask = T.ToTensor()(array_image, labels)
    assert torch.allclose(image, torch.full((3, 2, 2), 0.2)) and mask.dtype == torch.int64
    image, _ = T.ToTensor()(torch.full((3, 2, 2), 255, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.uint8))
    assert torch.allclose(image, torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="single-channel"):
        T.ToTensor()(grey, Image.new("RGB", (2, 2)))


def test_normalize_and_denormalize_round_trip():
    image = torch.rand(3, 5, 7)
    mask = torch.zeros(5, 7, dtype=torch.int64)
    normalised, same_mask = T.Normalize()(image, mask)
    assert same_mask is mask
    expected_red = (image[0] - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.allclose(normalised[0], expected_red)
    assert torch.allclose(T.denormalize(normalised), image, atol=1e-6)
    assert torch.allclose(T.denormalize(normalised[None].repeat(2, 1, 1, 1))[1], image, atol=1e-6)
    with pytest.raises(TypeError, match="ToTensor"):
        T.Normalize()(Image.new("RGB", (2, 2)), mask)


def test_eval_preset_resizes_longest_side_then_pads_to_square():
    image, mask = coordinate_pair(100, 50)
    out_image, out_mask = T.eval_preset(size=64)(image, mask)
    assert out_image.shape == (3, 64, 64) and out_mask.shape == (64, 64)
    assert (out_mask[:, 32:] == IGNORE_INDEX).all() and (out_mask[:, :32] != IGNORE_INDEX).all()
    padded_value = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.allclose(out_image[:, :, 40], padded_value[:, None].expand(3, 64))


def test_train_preset_without_augment_is_the_deterministic_eval_preset():
    image, mask = coordinate_pair(100, 50)
    torch.manual_seed(5)
    train_image, train_mask = T.train_preset(size=64)(image, mask)
    eval_image, eval_mask = T.eval_preset(size=64)(image, mask)
    assert torch.equal(train_image, eval_image) and torch.equal(train_mask, eval_mask)


def test_train_preset_hands_augment_padded_tensors_before_normalising():
    image, mask = coordinate_pair(100, 50)
    seen = []

    def mirror(image, mask):
        seen.append((image.clone(), mask.clone()))
        return image.flip(-1), mask.flip(-1)

    out_image, out_mask = T.train_preset(size=64, augment=mirror)(image, mask)
    assert len(seen) == 1
    got_image, got_mask = seen[0]
    assert got_image.dtype == torch.float32 and got_image.shape == (3, 64, 64)
    assert 0.0 <= float(got_image.min()) and float(got_image.max()) <= 1.0  # not normalised yet
    assert got_mask.dtype == torch.int64 and (got_mask[:, 32:] == IGNORE_INDEX).all()  # padded already
    plain_image, plain_mask = T.eval_preset(size=64)(image, mask)
    assert torch.equal(out_mask, plain_mask.flip(-1))
    assert torch.allclose(out_image, plain_image.flip(-1))
    assert_pair_consistent(T.denormalize(out_image), out_mask)


def test_train_preset_rejects_an_augment_that_is_not_callable():
    with pytest.raises(TypeError, match="augment"):
        T.train_preset(size=64, augment="flip")
    with pytest.raises(TypeError):
        T.train_preset(size=64, flip_p=0.5)  # the built-in flip is gone: pass your own augment


# --- SyntheticSegmentation ---------------------------------------------------------------


def test_synthetic_is_deterministic_per_index_whatever_the_order():
    forward = SyntheticSegmentation(6, 12, (32, 40), seed=7)
    backward = SyntheticSegmentation(6, 12, (32, 40), seed=7)
    forward_items = [forward[i] for i in range(6)]
    backward_items = {i: backward[i] for i in reversed(range(6))}
    for i, (image, mask) in enumerate(forward_items):
        assert torch.equal(image, backward_items[i][0]) and torch.equal(mask, backward_items[i][1])
    other_seed = SyntheticSegmentation(6, 12, (32, 40), seed=8)
    assert not torch.equal(other_seed[0][1], forward_items[0][1])
    assert not torch.equal(forward_items[0][1], forward_items[1][1])


def test_synthetic_shapes_dtypes_values_and_classes():
    dataset = SyntheticSegmentation(20, 12, (48, 64))
    assert len(dataset) == 20 and dataset.n_class == 12 and dataset.classes[0] == "class0"
    seen = set()
    for image, mask in (dataset[i] for i in range(20)):
        assert image.shape == (3, 48, 64) and image.dtype == torch.float32
        assert mask.shape == (48, 64) and mask.dtype == torch.int64
        seen.update(mask.unique().tolist())
    assert seen == set(range(12))  # every class appears, no stray values
    named = SyntheticSegmentation(2, 3, (16, 16), classes=("sky", "a", "b"))
    assert named.classes == ("sky", "a", "b")
    with pytest.raises(ValueError, match="n_class"):
        SyntheticSegmentation(2, 1)


def test_synthetic_ignore_border():
    _, mask = SyntheticSegmentation(1, 4, (20, 24), ignore_border=2).generate(0)
    assert (mask[:2] == IGNORE_INDEX).all() and (mask[-2:] == IGNORE_INDEX).all()
    assert (mask[:, :2] == IGNORE_INDEX).all() and (mask[:, -2:] == IGNORE_INDEX).all()
    assert (mask[2:-2, 2:-2] != IGNORE_INDEX).all()
    _, plain = SyntheticSegmentation(1, 4, (20, 24)).generate(0)
    assert (plain != IGNORE_INDEX).all()


def test_synthetic_classes_look_alike_across_seeds_so_they_are_learnable():
    """A per-pixel nearest-colour classifier fitted on seed 0 must work on seed 1."""

    def pixels(seed):
        samples = [SyntheticSegmentation(8, 12, (48, 64), seed=seed).generate(i) for i in range(8)]
        colours = np.concatenate([image.reshape(-1, 3) for image, _ in samples]).astype(np.float64)
        return colours, np.concatenate([mask.ravel() for _, mask in samples])

    train_colours, train_labels = pixels(0)
    class_means = np.stack([train_colours[train_labels == c].mean(axis=0) for c in range(12)])
    test_colours, test_labels = pixels(1)
    predicted = np.argmin(((test_colours[:, None] - class_means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test_labels).mean() > 0.85


def test_datasets_pickle_and_work_in_dataloader_workers():
    dataset = SyntheticSegmentation(4, 5, (16, 24), seed=2, transforms=T.eval_preset(size=32))
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[3][0], dataset[3][0])
    images, masks = next(iter(DataLoader(dataset, batch_size=4, num_workers=2)))
    assert images.shape == (4, 3, 32, 32) and masks.shape == (4, 32, 32)
    assert torch.equal(masks[2], dataset[2][1])


# --- folder datasets ---------------------------------------------------------------------


def _write_folder(root: Path, masks: dict[str, np.ndarray], image_ext: str = ".png") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, mask in masks.items():
        image = np.zeros((*mask.shape[:2], 3), dtype=np.uint8)
        image[..., 0] = 10 * np.arange(mask.shape[1], dtype=np.uint8)  # varies along x
        Image.fromarray(image).save(root / "images" / f"{name}{image_ext}")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def test_folder_dataset_reads_index_masks_and_splits(tmp_path):
    masks = {f"s{i}": np.full((6, 8), i, dtype=np.uint8) for i in range(4)}
    root = _write_folder(tmp_path / "ds", masks)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("s3\n\ns1\n")
    everything = FolderSegmentation(root)
    assert everything.names == ["s0", "s1", "s2", "s3"] and everything.n_class is None
    val = FolderSegmentation(root, "val")
    assert val.names == ["s3", "s1"]
    image, mask = val[0]
    assert image.shape == (3, 6, 8) and mask.dtype == torch.int64 and (mask == 3).all()
    assert (FolderSegmentation(root, "val", n_class=3)[0][1] == IGNORE_INDEX).all()  # 3 >= n_class
    with pytest.raises(FileNotFoundError, match="available splits"):
        FolderSegmentation(root, "test")


def _decode_by_loop(rgb, palette):
    """A test-only colour decoder (the kit ships none: it is the FCN notebook's rgb_to_index exercise)."""
    out = np.full(rgb.shape[:2], IGNORE_INDEX, dtype=np.int64)
    for index, colour in enumerate(palette):
        out[(rgb == np.asarray(colour)).all(axis=-1)] = index
    return out


def test_folder_dataset_decodes_colour_masks_with_the_given_function(tmp_path):
    palette = ((0, 0, 255), (0, 255, 0), (255, 255, 255))
    rgb = np.array([[[0, 0, 255], [0, 255, 0]], [[255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    root = _write_folder(tmp_path / "ds", {"tile": rgb})
    dataset = FolderSegmentation(root, palette=palette, decode_colours=_decode_by_loop)
    assert dataset.n_class == 3
    assert dataset[0][1].tolist() == [[0, 1], [2, IGNORE_INDEX]]  # unknown red -> ignore
    with pytest.raises(ValueError, match="palette="):
        FolderSegmentation(root)[0]
    with pytest.raises(ValueError, match="decode_colours=rgb_to_index"):
        FolderSegmentation(root, palette=palette)[0]


def test_folder_dataset_checks_what_the_colour_decoder_returns(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    root = _write_folder(tmp_path / "ds", {"tile": rgb})
    for wrong in (lambda rgb, palette: np.zeros((3, 2), np.int64), lambda rgb, palette: np.zeros((2, 3))):
        with pytest.raises(ValueError, match="integer class ids of shape"):
            FolderSegmentation(root, palette=[(0, 0, 0)], decode_colours=wrong)[0]
    with pytest.raises(ValueError, match="outside"):
        FolderSegmentation(root, palette=[(0, 0, 0)], decode_colours=lambda rgb, palette: np.full((2, 3), 256))[0]


def test_folder_dataset_reports_missing_masks_and_reads_meta(tmp_path):
    root = _write_folder(tmp_path / "ds", {"a": np.zeros((4, 4), dtype=np.uint8)})
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("a\nb\n")
    with pytest.raises(FileNotFoundError, match=r"\['b'\]"):
        FolderSegmentation(root, "train")
    (root / "meta.json").write_text(json.dumps({"n_class": 2, "classes": ["bg", "fg"]}))
    dataset = FolderSegmentation(root)
    assert dataset.n_class == 2 and dataset.classes == ("bg", "fg")
    with pytest.raises(FileNotFoundError, match="images/ and masks/"):
        FolderSegmentation(tmp_path / "nowhere")


# --- CMP Facade and the data root --------------------------------------------------------


def _fake_prepared_cmp(data_dir: Path) -> Path:
    masks = {
        "cmp_b0001": np.array([[0, 11], [255, 4]], dtype=np.uint8),
        "cmp_b0002": np.array([[1, 1], [2, 2]], dtype=np.uint8),
    }
    folder = _write_folder(data_dir / "cmp_facade", masks, image_ext=".jpg")
    (folder / "splits").mkdir()
    (folder / "splits" / "train.txt").write_text("cmp_b0001\n")
    (folder / "splits" / "val.txt").write_text("cmp_b0002\n")
    (folder / "splits" / "test.txt").write_text("")
    return folder


def test_data_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DATA, str(tmp_path / "mine"))
    assert data_root() == tmp_path / "mine"
    monkeypatch.delenv(ENV_DATA)
    assert data_root() == Path.home() / "segkit-data"


def test_cmp_facade_reads_a_prepared_folder(monkeypatch, tmp_path):
    folder = _fake_prepared_cmp(tmp_path)
    monkeypatch.setenv(ENV_DATA, str(tmp_path))
    train = CMPFacade(split="train")  # root from $SEGKIT_DATA
    assert train.classes == CMP_CLASSES and train.n_class == 12 and train.names == ["cmp_b0001"]
    image, mask = train[0]
    assert image.shape == (3, 2, 2) and mask.tolist() == [[0, 11], [255, 4]]
    assert CMPFacade(folder, "val").names == ["cmp_b0002"]  # the cmp_facade folder itself works too
    assert len(CMPFacade(tmp_path, "test")) == 0
    with pytest.raises(ValueError, match="split"):
        CMPFacade(tmp_path, "training")


def test_cmp_facade_missing_tells_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m data_scripts\.cmp_facade --root"):
        CMPFacade(tmp_path, "train")
