"""What a student sees from the public checks and from errors: results instead of exceptions, own frames, hints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import starter.checks as checks
from starter.checks import CheckResult, check, check_all
from starter.checks.core import CheckFailed, expect, expect_differentiable
from starter.checks.report import (
    NOT_DIFFERENTIABLE,
    NOT_IMPLEMENTED,
    WRONG_DEVICE,
    WRONG_DTYPE,
    _filtered_traceback,
    format_student_traceback,
    frame_origin,
    hint_for,
)

# Student code as a notebook cell compiles it: a file name that is not a file of the kit.
STUDENT_CELL = """
import torch
import torch.nn.functional as F

def stub(*args):
    raise NotImplementedError()

def wrong_target(logits, target):
    return F.cross_entropy(logits, target.float())

def detached_loss(logits, target):
    return torch.tensor(F.cross_entropy(logits, target).item())

def uses_stub(x):
    return stub(x)

class Base:
    def __init__(self, *args):
        raise NotImplementedError()

class Child(Base):
    pass

def torch_refuses(x):
    raise NotImplementedError("Could not run 'aten::foo' with arguments from the 'Meta' backend.")

def calls_kit(value):
    from starter.checks.core import expect
    expect(value > 0, "value must be positive")
"""


@pytest.fixture
def student():
    namespace: dict = {}
    exec(compile(STUDENT_CELL, "<ipython-input-7-0123>", "exec"), namespace)
    return namespace


def _check_loss(loss_fn):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = loss_fn(logits, torch.randint(0, 3, (2, 4, 4)))
    expect_differentiable(loss)


def _check_positive(function):
    expect(function(1) > 0, "return a positive number")


@pytest.fixture
def units(monkeypatch):
    """Two public checks registered for the test only, and a clean slate of results."""
    monkeypatch.setitem(checks.CHECKS, "test_loss", _check_loss)
    monkeypatch.setitem(checks.CHECKS, "test_positive", _check_positive)
    monkeypatch.setattr(checks, "RESULTS", {})
    monkeypatch.setattr(checks, "_units", lambda name: [("test_loss", 2), ("test_positive", 1), ("test_never_run", 3)])


def test_a_stub_is_reported_not_raised(units, student, capsys):
    """Does check() on a stub return 'not implemented' and print how to go on, instead of raising?"""
    result = check("test_loss", student["stub"])
    assert isinstance(result, CheckResult)
    assert not result and not result.implemented and not result.passed
    assert "✗ test_loss: not implemented yet" in capsys.readouterr().out


def test_a_stub_that_another_unit_calls_is_named(units, student, capsys):
    """When a unit calls another unit's stub, is that other unit named, the unit itself counted as implemented?"""
    for code, other in ((student["uses_stub"], "stub"), (student["Child"], "Base.__init__")):
        result = check("test_positive", code)
        assert result.implemented and not result.passed
        assert result.message.startswith(f"your code calls {other}, which is not implemented yet")
    assert not check("test_positive", student["Base"]).implemented
    capsys.readouterr()


def test_pytorchs_own_not_implemented_error_is_an_error_not_a_stub(units, student, capsys):
    """Is a NotImplementedError with a message (PyTorch's) reported as the error it is, not as a stub?"""
    result = check("test_positive", student["torch_refuses"])
    assert result.implemented and result.error.startswith("NotImplementedError: Could not run")
    assert NOT_IMPLEMENTED not in capsys.readouterr().out


def test_a_failed_expectation_is_reported_with_its_message(units, capsys):
    """Does a failing public check return its message (what to fix) and print it, without raising?"""
    result = check("test_positive", lambda x: -x)
    assert result.implemented and not result.passed
    assert result.message == "return a positive number" and result.error == ""
    assert "✗ test_positive: return a positive number" in capsys.readouterr().out


def test_a_passing_check_returns_a_true_result(units, capsys):
    """Does a passing check print ✓ and return a result that is true?"""
    result = check("test_loss", F.cross_entropy)
    assert result and result.passed
    assert "✓ test_loss: public checks passed" in capsys.readouterr().out


def test_an_error_in_student_code_leads_with_it_from_the_students_frames(units, student, capsys):
    """Does an exception raised by the student's code lead the report, shown from the student's frame, with a hint?"""
    result = check("test_loss", student["wrong_target"])
    printed = capsys.readouterr().out
    assert result.error.startswith("RuntimeError: expected") and "dtype" in result.error
    assert printed.startswith(f"✗ test_loss: your code raised {result.error}")
    assert "<ipython-input-7-0123>, line 9, in wrong_target" in printed
    assert "starter/checks" not in printed.replace("raised inside", "")  # the kit's frames are hidden
    assert "frames of the kit and of libraries hidden" in printed
    assert WRONG_DTYPE in printed


def test_a_detached_loss_gets_the_words_for_it(units, student, capsys):
    """Is a loss cut from the graph (.item() inside) reported as such, not as a raw torch error?"""
    result = check("test_loss", student["detached_loss"])
    assert not result.passed and result.error == ""
    assert NOT_DIFFERENTIABLE in result.message and ".item()" in result.message
    with pytest.raises(CheckFailed, match="got float"):
        expect_differentiable(1.5)


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("element 0 of tensors does not require grad and does not have a grad_fn", NOT_DIFFERENTIABLE),
        (
            "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
            WRONG_DEVICE,
        ),
        ("expected scalar type Long but found Float", WRONG_DTYPE),
        ("mat1 and mat2 must have the same dtype, but got Double and Float", WRONG_DTYPE),
        ("a size mismatch no hint covers", ""),
    ],
)
def test_common_torch_mistakes_get_a_hint_in_words(message, hint):
    """Does each common PyTorch mistake (graph, device, dtype) get its hint, and an unknown error none?"""
    assert hint_for(RuntimeError(message)) == hint


def test_a_unit_not_implemented_gets_a_hint_anywhere():
    """Does a NotImplementedError met in a later cell (a stub used by training) get the 'not implemented' hint?"""
    assert hint_for(NotImplementedError()) == NOT_IMPLEMENTED


def test_check_all_names_every_unit_and_what_it_lacks(units, student, capsys):
    """Does check_all() list every unit: passed, not implemented, not checked yet, and say how many pass?"""
    check("test_loss", student["stub"])
    check("test_positive", abs)
    capsys.readouterr()
    summary = check_all("anything")
    printed = capsys.readouterr().out
    assert "1 of 3 units pass" in printed
    lines = {line.split()[0]: line for line in printed.splitlines()[1:]}
    assert "not implemented yet" in lines["test_loss"]
    assert "✓ passed" in lines["test_positive"]
    assert "not checked yet" in lines["test_never_run"]
    assert summary.undone == ["test_loss", "test_never_run"] and not summary.passed


def test_frames_are_told_apart():
    """Are notebook cells the student's, the starter package the kit's, and torch a library's?"""
    assert frame_origin("<ipython-input-3-abc>") == "student"
    assert frame_origin("/tmp/ipykernel_4242/1234.py") == "student"
    assert frame_origin(checks.__file__) == "kit"
    assert frame_origin(torch.__file__) == "library"
    assert frame_origin("/home/me/course/my_helpers.py") == "student"


def test_the_students_frames_come_first_and_the_kit_is_counted(student):
    """Does the short traceback show the student's frames, then where it was raised, and count the rest?"""
    try:
        student["calls_kit"](-1)
    except CheckFailed as exc:
        lines = format_student_traceback(exc)
    text = "\n".join(lines)
    assert "In your code" in lines[0] and text.index("in calls_kit") < text.index("raised inside")
    assert "raised inside starter/checks/core.py" in text
    assert "1 frame of the kit and of libraries hidden" in lines[-1]


class _FakeShell:
    """The two things the traceback filter uses of an IPython shell."""

    def __init__(self):
        self.shown = None

        class _TB:
            @staticmethod
            def structured_traceback(etype, value, tb, tb_offset=None):
                return ["FULL TRACEBACK"]

        self.InteractiveTB = _TB()

    def _showtraceback(self, etype, value, stb):
        self.shown = stb


def _raised(function, *args):
    try:
        function(*args)
    except Exception as exc:  # the error under test
        return exc
    raise AssertionError("expected an exception")


def test_notebook_errors_through_the_kit_are_shortened_and_others_left_alone(student, monkeypatch):
    """In a notebook, is an error through the kit shortened to the student's frames, and a plain one shown in full?"""
    monkeypatch.delenv("SEGKIT_FULL_TRACEBACK", raising=False)
    shell = _FakeShell()
    through_kit = _raised(student["calls_kit"], -1)
    _filtered_traceback(shell, type(through_kit), through_kit, through_kit.__traceback__)
    assert shell.shown[0] == "CheckFailed: value must be positive" and "FULL TRACEBACK" not in shell.shown
    plain = _raised(math.sqrt, -1)
    _filtered_traceback(shell, type(plain), plain, plain.__traceback__)
    assert shell.shown == ["FULL TRACEBACK"]
    stub = _raised(student["stub"], 1)
    _filtered_traceback(shell, type(stub), stub, stub.__traceback__)
    assert shell.shown == ["FULL TRACEBACK", f"Hint: {NOT_IMPLEMENTED}"]
    monkeypatch.setenv("SEGKIT_FULL_TRACEBACK", "1")
    _filtered_traceback(shell, type(through_kit), through_kit, through_kit.__traceback__)
    assert shell.shown == ["FULL TRACEBACK"]


def test_a_result_prints_once_in_a_notebook():
    """Does a check's result, as a cell's last value, display nothing more (check() printed it already)?"""
    result = CheckResult("x", implemented=True, passed=False, message="fix this")
    assert result._ipython_display_() is None
    assert str(result) == "✗ x: fix this"


def test_training_samples_show_no_prediction_column():
    """Does the training-samples figure show image and ground truth only, never a column called 'prediction'?"""
    from starter.constants import CMP_CLASSES, CMP_PALETTE
    from starter.viz import show_samples

    images = torch.rand(2, 3, 8, 8)
    masks = torch.randint(0, len(CMP_CLASSES), (2, 8, 8))
    fig = show_samples(images, masks, palette=CMP_PALETTE, classes=CMP_CLASSES, n=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["image", "ground truth"] and len(fig.axes) == 4


def test_an_experiment_result_prints_in_one_line():
    """Does an ExperimentResult print as one short line, not every confusion count and epoch?"""
    from starter.runs import ExperimentResult

    result = ExperimentResult(
        "U-Net", "cmp_facade", (64, 64), 3, 5, "fast", "cpu", 1.0, 0.5, 0.25,
        confusion=[[1] * 12] * 12, history={"train_loss": [1.0] * 50}, extra={"mAP": 0.3},
    )  # fmt: skip
    text = repr(result)
    assert "\n" not in text and len(text) < 160 and "mIoU 0.250" in text and "mAP 0.300" in text
