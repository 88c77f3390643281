"""Given cells that meet a student's stub: skipped with one line, while every real error still shows."""

from __future__ import annotations

import asyncio
import traceback

import pytest
import torch

from starter.notebook import show_best, show_results, show_saved_predictions, skip_if_undone, unless_undone
from starter.runs import RunStore, run_or_load

# Compiled as a notebook cell is ("<cell>": the student's code), not as a file of the kit.
STUDENT_CELL = '''
def unet_train_epoch(model, loader, optimizer, loss_fn, device):
    """The student's stub, as the generated notebook has it."""
    # YOUR CODE HERE
    raise NotImplementedError()


class FCN32s:
    def __init__(self, n_class):
        raise NotImplementedError()


def written_with_a_shape_bug(x):
    return x.view(7, -1)


def written_with_an_unsupported_op(x):
    raise NotImplementedError("Could not run 'aten::something' with arguments from the 'Meta' backend.")
'''


@pytest.fixture
def cell():
    namespace: dict = {}
    exec(compile(STUDENT_CELL, "<cell>", "exec"), namespace)
    return namespace


def test_a_stub_is_skipped_with_one_line(cell, capsys):
    """Does a block that meets a stub print the skip line naming it, and let the cell carry on?"""
    with skip_if_undone("your own training loop") as block:
        cell["unet_train_epoch"](None, [], None, None, "cpu")
        reached = True
    assert "reached" not in locals(), "the rest of the block must not run"
    assert block.skipped == "unet_train_epoch"
    assert capsys.readouterr().out.strip() == (
        "skipped: your own training loop needs `unet_train_epoch`, which is not written yet; Run All continues"
    )


def test_unless_undone_returns_the_value_or_none(cell, capsys):
    """Does unless_undone return the function's value when it is written, and None with the line when a stub?"""
    assert unless_undone("the sum", sum, [1, 2]) == 3
    assert unless_undone("your own loop", cell["unet_train_epoch"], None, [], None, None, "cpu") is None
    assert "skipped: your own loop needs `unet_train_epoch`" in capsys.readouterr().out
    with pytest.raises(RuntimeError):
        unless_undone("the shapes", cell["written_with_a_shape_bug"], torch.zeros(3, 5))


def test_a_stub_class_is_named_by_its_class(cell, capsys):
    """Is a model stub (raising in __init__) named by the class the student writes, not by its method?"""
    with skip_if_undone("the parameter counts"):
        cell["FCN32s"](12)
    assert "needs `FCN32s`, which" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("call", "student_frame"),
    [
        (lambda cell: cell["written_with_a_shape_bug"](torch.zeros(3, 5)), True),
        (lambda cell: cell["written_with_an_unsupported_op"](torch.zeros(1)), True),
        (lambda cell: torch.zeros(1).to_sparse().view(1, 1), False),  # a NotImplementedError from inside torch
        (lambda cell: asyncio.AbstractEventLoop().run_forever(), False),  # bare, but raised by a library
    ],
    ids=["shape-bug", "message-from-student", "torch-unsupported-op", "bare-in-a-library"],
)
def test_a_real_error_is_not_swallowed(cell, call, student_frame, capsys):
    """Does every error that is not a student's bare stub still raise, with the student's frame in it?"""
    with pytest.raises((RuntimeError, NotImplementedError)) as raised:
        with skip_if_undone("a given cell"):
            call(cell)
    assert "skipped" not in capsys.readouterr().out
    frames = [frame.filename for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert ("<cell>" in frames) == student_frame, frames


def test_a_stub_wrapped_by_the_kit_is_skipped(cell, capsys):
    """Is a stub met inside the kit's overfit test (which raises its own error from the stub's) skipped too?"""
    from starter.train import overfit_one_batch

    batch = (torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with skip_if_undone("the overfit test"):
        overfit_one_batch(torch.nn.Conv2d(3, 2, 1), batch, epoch_fn=cell["unet_train_epoch"], steps=2, device="cpu")
    assert "skipped: the overfit test needs `unet_train_epoch`" in capsys.readouterr().out


def test_run_or_load_skips_a_row_whose_training_meets_a_stub(cell, tmp_path, capsys):
    """Does run_or_load return None with the skip line, save nothing, and leave the tables without the row?"""
    store = RunStore(tmp_path)

    def train(checkpoint_path):
        cell["unet_train_epoch"](None, [], None, None, "cpu")

    assert run_or_load(store, "U-Net", train) is None
    assert "skipped: U-Net needs `unet_train_epoch`" in capsys.readouterr().out
    assert store.results() == {}
    show_results(store.results(), ["a", "b"])
    assert show_best(store.results(), ["a", "b"]) is None
    show_saved_predictions(store, ["U-Net", None])
    shown = capsys.readouterr().out
    assert "No results yet" in shown and "none yet" in shown and "U-Net: not trained yet" in shown


def test_run_or_load_still_raises_a_real_error(cell, tmp_path):
    """Does a written unit's bug inside training still raise out of run_or_load?"""

    def train(checkpoint_path):
        cell["written_with_a_shape_bug"](torch.zeros(3, 5))

    with pytest.raises(RuntimeError):
        run_or_load(RunStore(tmp_path), "U-Net", train)
