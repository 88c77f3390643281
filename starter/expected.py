"""What a correct run should reach, so that a student can tell a bug from a slow start.

The notebooks state the ranges next to their training cells; the numbers come from the kit's own
runs on real data (`make results`, docs/results.md) and, where marked, from the original course
material. After each experiment the notebook calls::

    report_against_expected(result.name, result.miou, EXPECTED.get(result.name))

which prints one line: inside the range, or a warning (far outside it) with the usual causes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# How far outside the range counts as "far": a fraction of the range's width on each side (runs
# differ by seed, and students change hyperparameters; a run just outside is no reason for alarm).
SLACK_FRACTION = 0.5

USUAL_CAUSES = (
    "the learning rate (too high: the loss jumps or becomes NaN; too low: it barely moves)",
    "labels: masks must hold 0..n_class-1 and the ignore index 255 (look at torch.unique(mask))",
    "image and mask not aligned after augmentation, or the mask resized with bilinear instead of nearest",
    "the model's output not upsampled (or cropped) to the mask's size and position",
    "the metrics: a confusion matrix with rows and columns swapped, or mIoU averaged per batch",
)


@dataclass(frozen=True)
class ExpectedRange:
    """Test mIoU a correct implementation reaches in one profile.

    Attributes:
        low, high: the range (fractions, 0..1).
        source: where it comes from, e.g. "make results, cpu profile, 2 CPU cores".
    """

    low: float
    high: float
    source: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"expected 0 <= low <= high <= 1, got {self.low}, {self.high}")


def verdict(miou: float, expected: ExpectedRange) -> str:
    """Inputs: a test mIoU and its expected range. Returns: "inside", "near", "far below" or "far above"."""
    if math.isnan(miou):
        return "far below"
    slack = SLACK_FRACTION * (expected.high - expected.low)
    if expected.low <= miou <= expected.high:
        return "inside"
    if miou < expected.low - slack:
        return "far below"
    if miou > expected.high + slack:
        return "far above"
    return "near"


def report_against_expected(name: str, miou: float, expected: ExpectedRange | None) -> str:
    """Print (and return) how a run's test mIoU compares with the expected range.

    Inputs:
        name: experiment name; miou: its test mIoU; expected: the range, or None when the kit
            has not measured this experiment in this profile on this dataset, or measured it no better
            than a network predicting the commonest class (no range could tell a bug from a correct run
            there); the message then points at the notebook's table, which says which and gives the
            original course's published numbers where known.
    Returns:
        The message printed.
    """
    if expected is None:
        message = (
            f"{name}: test mIoU {miou:.3f} (no expected range for this profile and dataset: the kit has not measured "
            "one, or its run scores no better than predicting the commonest class, which a broken network does too; "
            'the "What to expect" table says which, with what the original course published for its setting)'
        )
    else:
        where = f"expected {expected.low:.2f}-{expected.high:.2f} ({expected.source})"
        kind = verdict(miou, expected)
        if kind == "inside":
            message = f"{name}: test mIoU {miou:.3f} is inside the {where}"
        elif kind == "near":
            message = f"{name}: test mIoU {miou:.3f} is just outside the {where}: fine, runs vary"
        else:
            causes = "\n".join(f"  - {cause}" for cause in USUAL_CAUSES)
            extra = (
                " A result far ABOVE the range usually means test images leaked into training."
                if kind == "far above"
                else ""
            )
            message = (
                f"WARNING {name}: test mIoU {miou:.3f} is {kind} the {where}.{extra}\n"
                f"If you did not change the settings, check the usual causes:\n{causes}"
            )
    print(message)
    return message
