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
