"""What a public check tells the student: its result, the student's own frames of an error, a hint in words.

`check()` returns a `CheckResult` instead of raising, so "Run All" goes on past a unit left
undone. An error raised by the student's code is shown from the student's own frames (notebook
cells and the student's own files); the frames of the kit and of libraries are counted, not
shown. Common PyTorch mistakes (a loss cut from the graph, tensors on two devices, a wrong
dtype) get a hint in words. `install_traceback_filter()` does the same for errors in any cell of
a notebook (a training cell calling the kit's `fit`, say); the grader never runs it.
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path

from starter.constants import ENV_FULL_TRACEBACK

# The kit's own code: the starter package and, in the kit's repository, the assignments' public checks.
KIT_DIRS = (Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2] / "assignments")
LIBRARY_DIRS = tuple(
    {
        Path(p).resolve()
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(key))
    }
)
MAX_STUDENT_FRAMES = 6


@dataclass
class CheckResult:
    """The outcome of one unit's public check.

    implemented: False while the unit still raises NotImplementedError (its stub).
    passed: every public check passed. message: what to fix ("" when passed). error: the exception
    the student's code raised ("RuntimeError: ..."), "" when the check itself found the problem.
    """

    unit: str
    implemented: bool
    passed: bool
    message: str = ""
    error: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return f"✓ {self.unit}: public checks passed"
        if not self.implemented:
            return f"✗ {self.unit}: not implemented yet"
        return f"✗ {self.unit}: {self.message}"

    def _ipython_display_(self) -> None:
        # check() has printed the report already; echoing the object as a cell's value would repeat it.
        return None


# --- where a frame comes from -------------------------------------------------------------


def _under(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def frame_origin(filename: str) -> str:
    """ "student" (a notebook cell or the student's own file), "kit" (starter, public checks) or "library"."""
    if filename.startswith("<") and not filename.startswith("<frozen"):
        return "student"  # <ipython-input-...>, <string>, a cell compiled by hand
    if filename.startswith("<frozen"):
        return "library"
    path = Path(filename).resolve()
    if "ipykernel_" in filename:
        return "student"  # /tmp/ipykernel_<pid>/<hash>.py: a notebook cell
    if _under(path, KIT_DIRS):
        return "kit"
    if _under(path, LIBRARY_DIRS) or "site-packages" in path.parts or "dist-packages" in path.parts:
        return "library"
    return "student"


def _cell_name(filename: str) -> str:
    """ "Cell In[7]" for a notebook cell IPython knows, else the file's name."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        number = shell.compile._filename_map.get(filename) if shell is not None else None
    except Exception:  # no IPython, or an IPython without that map: the plain name will do
        number = None
    return f"Cell In[{number}]" if number is not None else filename


def student_frames(tb) -> tuple[list[traceback.FrameSummary], int]:
    """The student's frames of a traceback, outermost first, and how many other frames it has."""
    frames = traceback.extract_tb(tb)
    own = [frame for frame in frames if frame_origin(frame.filename) == "student"]
    return own, len(frames) - len(own)


def format_student_traceback(exc: BaseException, *, indent: str = "  ") -> list[str]:
    """Lines: the student's frames (source line included), then where the error was raised if elsewhere."""
    frames = traceback.extract_tb(exc.__traceback__)
    own, hidden = student_frames(exc.__traceback__)
    lines: list[str] = []
    if own:
        lines.append(f"{indent}In your code (most recent call last):")
        shown = own[-MAX_STUDENT_FRAMES:]
        for frame in shown:
            lines.append(f"{indent}  {_cell_name(frame.filename)}, line {frame.lineno}, in {frame.name}")
            source = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
            if source:
                lines.append(f"{indent}      {source}")
    if frames and frame_origin(frames[-1].filename) != "student":
        last = frames[-1]
        lines.append(f"{indent}  raised inside {_short_path(last.filename)}, line {last.lineno}, in {last.name}")
    if hidden:
        lines.append(
            f"{indent}({hidden} frame{'s' if hidden != 1 else ''} of the kit and of libraries hidden; "
            f"set %env {ENV_FULL_TRACEBACK}=1 and re-run to see them)"
        )
    return lines


def _short_path(filename: str) -> str:
    path = Path(filename)
    for marker in ("site-packages", "dist-packages"):
        if marker in path.parts:
            return "/".join(path.parts[path.parts.index(marker) + 1 :])
    for folder in KIT_DIRS:
        if _under(path.resolve(), (folder,)):
            return f"{folder.name}/{path.resolve().relative_to(folder).as_posix()}"
    return filename


# --- hints in words ----------------------------------------------------------------------

NOT_DIFFERENTIABLE = (
    "the loss is not connected to the model's parameters, so backward() has nothing to follow. "
    "Something inside the loss left PyTorch's graph: .item(), float(...), .detach(), .numpy(), "
    "torch.tensor(...) of a computed value, or a computation under torch.no_grad(). Compute the "
    "loss with torch operations on the logits and return that tensor."
)
WRONG_DEVICE = (
    "tensors on two devices met in one operation (e.g. the model on the GPU, a tensor on the CPU). "
    "Move every input to the model's device with .to(device), including tensors you create "
    "(torch.zeros(..., device=x.device)) and loss weights."
)
WRONG_DTYPE = (
    "a tensor has the wrong dtype for this operation. Images and logits are float32 (.float()); "
    "class labels for cross-entropy and indexing are int64 (.long()); float64 (NumPy's default) "
    "must become float32 before it meets the model's weights."
)
NOT_IMPLEMENTED = (
    "this needs a graded unit you have not implemented yet (its cell still raises NotImplementedError): "
    "fill it in and run its cell, then this one; or carry on and come back to it (check_all() at the end "
    "lists what is left)."
)
NUMPY_ON_GRAD = (
    "convert a tensor to NumPy only after .detach() (and .cpu() when it lives on a GPU): tensor.detach().cpu().numpy()."
)

_HINTS = (
    (
        ("does not require grad and does not have a grad_fn", "'float' object has no attribute 'backward'"),
        NOT_DIFFERENTIABLE,
    ),
    (
        (
            "expected all tensors to be on the same device",
            "on different devices",
            "cuda.floattensor) should be the same",
        ),
        WRONG_DEVICE,
    ),
    (("can't convert cuda", "can't convert mps"), NUMPY_ON_GRAD),
    (("call numpy() on tensor that requires grad",), NUMPY_ON_GRAD),
    (
        (
            "expected scalar type",
            "expected object of scalar type",
            "must have the same dtype",
            "can't be cast to the desired output type",
            "not implemented for 'long'",
            "not implemented for 'byte'",
            "not implemented for 'int'",
            "not implemented for 'bool'",
            "input type (double)",
            "input type (torch.doubletensor)",
            "found dtype",
            "target dtype to be",
            "expected dtype",
            "expected floating point type",
            "tensors used as indices must be long",
        ),
        WRONG_DTYPE,
    ),
)


def hint_for(exc: BaseException) -> str:
    """A hint in words for a common PyTorch mistake behind `exc`, or ""."""
    if is_stub_error(exc):
        return NOT_IMPLEMENTED
    text = f"{type(exc).__name__}: {exc}".lower()
    for needles, hint in _HINTS:
        if any(needle in text for needle in needles):
            return hint
    return ""


def is_stub_error(exc: BaseException) -> bool:
    """A student stub's `raise NotImplementedError()` (bare: PyTorch's own NotImplementedErrors have a message)."""
    return isinstance(exc, NotImplementedError) and not str(exc).strip()


def stub_raised_by(exc: BaseException, objects: tuple) -> str | None:
    """Which stub raised `exc`: None when one of `objects` (the unit under check) did, else the name of
    the other function of the student's code that did (a unit this one calls, not implemented yet)."""
    frames = list(_walk_tb(exc.__traceback__))
    if not frames:
        return None
    code = frames[-1].f_code
    if any(code in _codes(obj) for obj in objects) or frame_origin(code.co_filename) != "student":
        return None
    return getattr(code, "co_qualname", code.co_name)


def _walk_tb(tb):
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _codes(obj) -> set:
    """The code objects of a function, or of the methods a class defines itself."""
    if hasattr(obj, "__code__"):
        return {obj.__code__}
    if isinstance(obj, type):
        found = set()
        for value in vars(obj).values():
            function = getattr(value, "__func__", value)  # staticmethod / classmethod
            if hasattr(function, "__code__"):
                found.add(function.__code__)
        return found
    return set()


def describe_error(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its message."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --- every cell of a notebook ------------------------------------------------------------


def _filtered_traceback(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: the student's frames and a hint when the kit is involved."""
    frames = traceback.extract_tb(tb)
    through_kit = any(frame_origin(frame.filename) == "kit" for frame in frames)
    hint = hint_for(value)
    if os.environ.get(ENV_FULL_TRACEBACK, "").strip() not in ("", "0") or not (through_kit or hint):
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    elif not through_kit:
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset) + [f"Hint: {hint}"]
    else:
        value.__traceback__ = tb
        stb = [f"{etype.__name__}: {value}", *format_student_traceback(value, indent="")]
        if hint:
            stb.append(f"Hint: {hint}")
    shell._showtraceback(etype, value, stb)
    return stb


def install_traceback_filter() -> bool:
    """In a notebook: show errors that pass through the kit from the student's frames, with hints.

    Returns True when installed (an IPython kernel is running), False elsewhere (scripts, the grader).
    """
    shell = sys.modules.get("IPython") and _ipython_shell()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    shell.set_custom_exc((Exception,), _filtered_traceback)
    return True


@dataclass
class CheckSummary:
    """What check_all() found: each graded unit's latest CheckResult, None when its check has not run."""

    assignment: str
    results: dict[str, CheckResult | None]

    @property
    def passed(self) -> bool:
        return all(result is not None and result.passed for result in self.results.values())

    @property
    def undone(self) -> list[str]:
        """The units whose check has not passed (not run, not implemented, or failing)."""
        return [unit for unit, result in self.results.items() if result is None or not result.passed]

    def _ipython_display_(self) -> None:
        # check_all() has printed the summary already.
        return None


def _ipython_shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
