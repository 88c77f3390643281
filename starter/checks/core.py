"""Registry and runner of the public self-checks (one module per assignment registers into it)."""

from __future__ import annotations

from collections.abc import Callable

CHECKS: dict[str, Callable] = {}


class CheckFailed(AssertionError):
    """A public check failed; the message says what to fix."""


def register(name: str):
    """Decorator: `@register("fcn32s")` makes a function the public check of that unit."""

    def decorate(function):
        if name in CHECKS:
            raise ValueError(f"public check {name!r} registered twice")
        CHECKS[name] = function
        return function

    return decorate


def expect(condition, message: str):
    if not condition:
        raise CheckFailed(message)


def expect_differentiable(value, what: str = "the loss"):
    """`value` must be a tensor PyTorch can backpropagate through (it has a grad_fn)."""
    from starter.checks.report import NOT_DIFFERENTIABLE

    expect(
        getattr(value, "grad_fn", None) is not None,
        f"{what} has no gradient (got {type(value).__name__}"
        f"{'' if not hasattr(value, 'grad_fn') else ' without grad_fn'}): {NOT_DIFFERENTIABLE}",
    )
