"""Hidden-check bodies for the units several assignments share (same contract everywhere):
`confusion_matrix(pred, target, n_class, ignore_index=255)` and `iou_per_class` / `mean_iou`.

Each assignment's check file keeps its own `@unit(...)` tests (grade_id, points, message) and
calls these, so the cases and the comparison are written once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from grader.harness import ReferenceNamespace, assert_close, expect, expect_tensor

if TYPE_CHECKING:
    from grader.runner import Submission

# The probe_* functions run in the worker from their source alone (no __future__ import there), so
# their annotations stay quoted or builtin: the worker evaluates them when it defines the function.


def probe_confusion(
    ns: "dict[str, Any]",  # noqa: UP037 (evaluated in the worker)
    pred: object,
    target: object,
    n_class: int,
    ignore_index: int | None = None,
) -> object:
    if ignore_index is None:
        return ns["confusion_matrix"](pred, target, n_class)
    return ns["confusion_matrix"](pred, target, n_class, ignore_index=ignore_index)


def probe_iou(ns: "dict[str, Any]", conf: object) -> dict[str, object]:  # noqa: UP037 (evaluated in the worker)

    iou = ns["iou_per_class"](conf)
    miou = ns["mean_iou"](conf)
    return {"iou": iou, "miou": miou, "miou_type": type(miou).__name__}


def random_labels(
    seed: int,
    shape: tuple[int, ...],
    n_class: int,
    *,
    ignore_fraction: float = 0.1,
    absent: tuple[int, ...] = (),
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels with `ignore_fraction` of pixels set to 255, the same labels without them)."""
    generator = torch.Generator().manual_seed(seed)
    present = [c for c in range(n_class) if c not in absent]
    labels = torch.tensor(present)[torch.randint(len(present), shape, generator=generator)]
    ignore = torch.rand(shape, generator=generator) < ignore_fraction
    return labels.masked_fill(ignore, 255).to(dtype or torch.int64), labels.to(dtype or torch.int64)


ConfusionCase = tuple[torch.Tensor, torch.Tensor, int, int | None]  # (pred, target, n_class, ignore_index)


def confusion_cases(n_class: int) -> list[ConfusionCase]:
    """Batched and unbatched labels, ignore pixels, absent classes, targets outside [0, n_class)
    (negative too) and a custom ignore_index."""
    cases: list[ConfusionCase] = []
    target, _ = random_labels(1, (4, 23, 31), n_class, absent=(4,))
    _, pred = random_labels(2, (4, 23, 31), n_class, ignore_fraction=0)
    cases.append((pred, target, n_class, None))
    target, _ = random_labels(3, (17, 19), 4)
    _, pred = random_labels(4, (17, 19), 4, ignore_fraction=0, absent=(2,))
    cases.append((pred, target.clone(), 4, None))
    target[0, :5] = 4  # == n_class: outside [0, n_class), skipped like ignore pixels
    target[2, :3] = 9  # far outside
    target[1, :4] = -1  # negative: also outside
    cases.append((pred, target.clone(), 4, None))
    target, _ = random_labels(5, (3, 8, 8), 3, ignore_fraction=0.0)
    target[:, 0] = 7
    cases.append((pred[:8, :8].expand(3, 8, 8).clamp(max=2).contiguous(), target, 3, 7))
    # ignore_index that is also a valid class id: those pixels are skipped, not counted as class 1
    target, _ = random_labels(8, (2, 6, 9), 3, ignore_fraction=0.0)
    _, pred = random_labels(9, (2, 6, 9), 3, ignore_fraction=0)
    cases.append((pred, target, 3, 1))
    # the last classes absent from both prediction and target: the matrix keeps its full size
    target, _ = random_labels(10, (5, 7), 5, ignore_fraction=0.1, absent=(3, 4))
    _, pred = random_labels(11, (5, 7), 5, ignore_fraction=0, absent=(3, 4))
    cases.append((pred, target, 5, None))
    return cases


def check_confusion_counts(
    sub: Submission, ref: ReferenceNamespace, *, n_class: int, timeout: float | None = None
) -> None:
    for i, (pred, target, classes, ignore_index) in enumerate(confusion_cases(n_class)):
        expected = ref.call(probe_confusion, pred, target, classes, ignore_index)
        actual = sub.call(probe_confusion, pred, target, classes, ignore_index, timeout=timeout)
        expect_tensor(actual, what=f"case {i + 1}: confusion matrix", shape=expected.shape)
        expect(torch.equal(actual.long(), expected), f"case {i + 1}: the counts are wrong")


def check_confusion_dtypes(sub: Submission, ref: ReferenceNamespace, *, timeout: float | None = None) -> None:
    for dtype in (torch.int32, torch.int64, torch.uint8):
        target, _ = random_labels(6, (2, 9, 11), 5, dtype=dtype)
        _, pred = random_labels(7, (2, 9, 11), 5, ignore_fraction=0, dtype=dtype)
        expected = ref.call(probe_confusion, pred, target, 5)
        actual = sub.call(probe_confusion, pred, target, 5, timeout=timeout)
        expect_tensor(actual, what=f"confusion matrix for {dtype} inputs", shape=expected.shape, dtype=torch.int64)
        expect(torch.equal(actual, expected), f"the counts are wrong for {dtype} inputs")


def sample_confusions(n_class: int, seed: int) -> list[torch.Tensor]:
    """A matrix with a class absent everywhere (NaN), one with a class predicted but never true
    (IoU 0, not NaN), and a diagonal one with an empty class."""
    generator = torch.Generator().manual_seed(seed)
    confs = []
    conf = torch.randint(0, 50, (n_class, n_class), generator=generator)
    conf[3, :] = 0
    conf[:, 3] = 0
    confs.append(conf)
    conf = torch.randint(0, 9, (4, 4), generator=generator)
    conf[1, :] = 0
    confs.append(conf)
    confs.append(torch.diag(torch.tensor([5, 0, 7])))
    return confs


def check_iou_values(
    sub: Submission, ref: ReferenceNamespace, *, n_class: int, seed: int, timeout: float | None = None
) -> None:
    for i, conf in enumerate(sample_confusions(n_class, seed)):
        actual, expected = sub.call(probe_iou, conf, timeout=timeout), ref.call(probe_iou, conf)
        expect(type(actual) is dict, "iou_per_class / mean_iou did not return plain values")
        assert_close(actual["iou"], expected["iou"], what=f"case {i + 1}: IoU per class", rtol=1e-5)


def check_mean_iou(
    sub: Submission, ref: ReferenceNamespace, *, n_class: int, seed: int, timeout: float | None = None
) -> None:
    for i, conf in enumerate(sample_confusions(n_class, seed)):
        actual, expected = sub.call(probe_iou, conf, timeout=timeout), ref.call(probe_iou, conf)
        expect(
            type(actual) is dict and actual.get("miou_type") == "float",
            f"mean_iou returned a {actual.get('miou_type') if type(actual) is dict else '?'}, expected float",
        )
        assert_close(actual["miou"], expected["miou"], what=f"case {i + 1}: mean IoU", rtol=1e-5)
