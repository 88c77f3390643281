"""Student ids: the one rule `python -m starter.submit` and `make grade` share.

A student id names the zip a student hands in and the folders the grader writes for them
(``OUT/feedback/<id>/``, ``OUT/results/<assignment>/<id>.json``), so it must be a plain file
name: letters, digits and ``. _ - @``, starting with a letter or a digit (so never ``..``,
a hidden file or something that looks like an option), at most ``MAX_STUDENT_ID`` characters.
"""

from __future__ import annotations

import re
import unicodedata

MAX_STUDENT_ID = 64
_ALLOWED = "letters, digits, '.', '_', '-' and '@'"
STUDENT_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._@-]{{0,{MAX_STUDENT_ID - 1}}}")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._@-]+")


class StudentIdError(ValueError):
    """A student id that breaks the rule; the message says what is wrong and what is allowed."""


def is_student_id(text: str) -> bool:
    return isinstance(text, str) and STUDENT_ID.fullmatch(text) is not None


def check_student_id(text: str) -> str:
    """``text`` when it is a valid student id; raises StudentIdError saying why not."""
    if is_student_id(text):
        return text
    if not text:
        raise StudentIdError("the student id is empty")
    if len(text) > MAX_STUDENT_ID:
        raise StudentIdError(f"the student id {text[:20]!r}... is longer than {MAX_STUDENT_ID} characters")
    raise StudentIdError(
        f"the student id {text!r} may only hold {_ALLOWED} (at most {MAX_STUDENT_ID}, starting with a letter or digit)"
    )


def normalise_student_id(name: str) -> str | None:
    """An id made from a name an LMS wrote (``Jane Doe``, ``Zoë O'Neil``): accents dropped, every run
    of other characters turned into ``_``, leading and trailing punctuation removed, cut to the
    maximum length. None when nothing usable is left (e.g. ``..``)."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _NOT_ALLOWED.sub("_", ascii_text).strip("._-@")[:MAX_STUDENT_ID].rstrip("._-@")
    return cleaned if is_student_id(cleaned) else None
