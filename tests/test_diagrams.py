"""starter.diagrams: the FCN-8s and U-Net architecture figures."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.text import Text

from starter.diagrams import fcn8s_skip_figure, unet_skip_figure


def _texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def test_fcn8s_figure_shows_strides_skips_and_crops():
    """Does the FCN-8s figure label the strides, the skip layers and the three crop offsets?"""
    fig = fcn8s_skip_figure()
    assert isinstance(fig, Figure)
    text = _texts(fig)
    for label in ("1/8", "1/16", "1/32", "score_pool3", "score_pool4", "upscore2", "upscore_pool4", "upscore8"):
        assert label in text, label
    for label in ("crop 5", "crop 9", "crop 31"):
        assert label in text, label
    assert "crop 27" not in text  # FCN-16s's crop does not belong in FCN-8s


def test_unet_figure_shows_blocks_channels_and_skips():
    """Does the U-Net figure show every channel count, four poolings and one skip per level?"""
    fig = unet_skip_figure()
    assert isinstance(fig, Figure)
    text = _texts(fig)
    for channels in (64, 128, 256, 512, 1024):
        assert f"{channels} ch" in text, channels
    assert text.count("max pool 2x2") == 4
    assert text.count("skip: concatenate") == 4
    assert "1/16" in text
