"""The given code of the instance notebook's deep watershed (starter/deep_watershed.py), on tiny tensors."""

import torch

from starter.deep_watershed import (
    IGNORE,
    TwoHeadNet,
    WindowEnergyData,
    ids_from_masks,
    level_histogram,
    predict_two_heads,
    train_two_heads,
)
from starter.instance import SmallSegNet


def test_ids_from_masks_numbers_masks_from_one_and_later_masks_win():
    """Does the id map give mask k the id k + 1, the background 0, and overlaps to the later mask?"""
    masks = torch.zeros(2, 4, 5, dtype=torch.uint8)
    masks[0, 0:2, 0:3] = 1
    masks[1, 1:3, 2:5] = 1
    ids = ids_from_masks(masks)
    assert ids.dtype == torch.int64
    assert ids[0, 0] == 1 and ids[2, 4] == 2 and ids[3, 0] == 0
    assert ids[1, 2] == 2  # both masks: the later one
    assert ids_from_masks(torch.zeros(0, 3, 3)).eq(0).all()


def test_two_head_net_copies_its_trunk_and_gives_both_heads():
    """Does TwoHeadNet leave the given network untouched and return (B, 2, H, W) and (B, K, H, W) logits?"""
    trunk = SmallSegNet(12, width=4)
    net = TwoHeadNet(trunk, n_levels=5)
    semantic, energy = net(torch.rand(2, 3, 16, 24))
    assert semantic.shape == (2, 2, 16, 24) and energy.shape == (2, 5, 16, 24)
    assert isinstance(trunk.head, torch.nn.Conv2d), "the semantic network's own head must stay"


class _Facades:
    """Two tiny facades in the CMPFacadeInstances interface: one window each, one facade smaller than the crop."""

    def __init__(self):
        self.sizes = [(10, 12), (6, 5)]

    def __len__(self):
        return len(self.sizes)

    def load_image(self, index):
        return torch.rand(3, *self.sizes[index])

    def label_mask(self, index):
        mask = torch.ones(self.sizes[index], dtype=torch.int64)
        mask[1:4, 1:4] = 2
        mask[0, 0] = 255
        return mask

    def instance_masks(self, index):
        masks = torch.zeros(2, *self.sizes[index], dtype=torch.uint8)
        masks[0, 1:4, 1:4] = 1
        masks[1, 4:6, 0:2] = 1  # a door (label 2): not a window
        return masks, torch.tensor([1, 2]), torch.zeros(2, 4)


def _levels_of(ids, n_levels, step):
    """A stand-in energy: 1 on every instance pixel, 2 on its first pixel (what the student's function returns)."""
    levels = (ids > 0).long()
    levels[1, 1] = min(2, n_levels - 1)
    return levels


def test_window_energy_data_keeps_crops_aligned_and_pads_with_ignore():
    """Are image, semantic target, levels and object pixels cropped, padded and flipped together?"""
    torch.manual_seed(0)
    data = WindowEnergyData(
        _Facades(), window_class=2, window_label=1, energy_fn=_levels_of, n_levels=4, step=1.0, crop=8
    )
    assert len(data) == 2
    assert int(data.samples[0].objects.sum()) == 9, "only the window instances are objects"
    for _ in range(6):
        image, semantic, levels, objects = data[1]  # 6 x 5: padded to 8 x 8
        assert image.shape == (3, 8, 8) and semantic.shape == levels.shape == objects.shape == (8, 8)
        assert torch.equal(objects, levels > 0), "levels and object pixels must move together"
        assert torch.equal(objects, semantic == 1), "the window's semantic pixels are its instance's pixels here"
        assert int((semantic == IGNORE).sum()) == 64 - 30 + 1, "the padding and the unlabelled pixel are ignored"


def test_training_steps_and_prediction_shapes():
    """Does a two-step training record its losses, and does prediction give a probability and int64 levels?"""
    torch.manual_seed(0)
    data = WindowEnergyData(
        _Facades(), window_class=2, window_label=1, energy_fn=_levels_of, n_levels=3, step=1.0, crop=8
    )
    net = TwoHeadNet(SmallSegNet(12, width=4), n_levels=3)

    def energy_loss(logits, levels, objects):
        return torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[objects], levels[objects])

    loader = torch.utils.data.DataLoader(data, batch_size=2)
    history = train_two_heads(net, loader, energy_loss, epochs=2, lr=1e-3, device="cpu", verbose=False)
    assert len(history.semantic_loss) == len(history.energy_loss) == 2
    assert all(loss > 0 for loss in history.energy_loss)
    probability, levels = predict_two_heads(net, torch.rand(3, 10, 13), "cpu")
    assert probability.shape == levels.shape == (10, 13)
    assert levels.dtype == torch.int64 and 0 <= int(levels.min()) and int(levels.max()) < 3
    assert float(probability.min()) >= 0 and float(probability.max()) <= 1
    share = level_histogram([s.levels for s in data.samples], [s.objects for s in data.samples], 3)
    assert abs(float(share.sum()) - 1) < 1e-6 and share[0] == 0
