"""Mutation testing of the hidden checks: does every plausible bug in a solution lose points?

    python -m segkit.proof.mutate                                   # every assignment, every unit
    python -m segkit.proof.mutate --assignment fcn --unit fcn_iou   # one unit
    python -m segkit.proof.mutate --max-per-unit 20 -j 2 --report docs/mutation-report.md
    python -m segkit.proof.mutate --list --unit patch_weights       # print the mutants, grade nothing

Each graded cell of a solution notebook is parsed; every statement lying inside a
`### BEGIN SOLUTION` / `### END SOLUTION` region is mutated at the AST level, one small change
at a time (a constant off by one, a flipped comparison, a dropped statement, a wrong dim, ...).
A mutant is the solution notebook with that one cell replaced; it is graded with ONLY that
unit's hidden checks (`grader.runner.grade(..., units={grade_id})`). A mutant is *caught* when
the unit loses points. A surviving mutant is either listed in its assignment.toml's `[[proof.equivalent]]` (it computes the
same thing as the reference on everything the contract allows, with the reason) or it points at
a missing hidden check.

Only the mutated statement's lines are rewritten (with `ast.unparse`), so the rest of the cell,
comments and the student-facing signature included, stays byte-for-byte identical; the
signature of every function and class of the cell is verified unchanged.

Mutant ids are `<operator>-<10 hex digits of sha1(mutated cell)>`: stable while the solution
cell is unchanged. Sampling (`--max-per-unit`) is deterministic: operators take turns
(round-robin, each operator's mutants in id order), so every kind of mutation is represented.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"

DEFAULT_MAX_PER_UNIT = 20
EXPENSIVE_MAX_PER_UNIT = 8  # for units listed in an assignment's `[grading] expensive_units`


def equivalent_mutants(assignments: list[str] | None = None) -> dict[tuple[str, str], str]:
    """(grade_id, mutant id) -> reason, from every assignment's `[[proof.equivalent]]` entries: surviving
    mutants that compute the same thing as the reference on everything the contract fixes."""
    from grader.assignments import assignment_names, load_assignment

    found = {}
    for name in assignments or assignment_names():
        found.update(load_assignment(name).config.equivalent_reasons)
    return found


def expensive_units(assignments: list[str] | None = None) -> set[str]:
    """Units whose checks build large networks (from each assignment.toml): sampled less."""
    from grader.assignments import assignment_names, load_assignment

    return {unit for name in assignments or assignment_names() for unit in load_assignment(name).config.expensive_units}


# --- mutation sites ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    grade_id: str
    operator: str
    mutant_id: str
    line: int
    description: str
    source: str  # the whole mutated cell


def solution_regions(source: str) -> list[tuple[int, int]]:
    """(begin, end) line numbers (1-based) of each `### BEGIN/END SOLUTION` marker pair."""
    regions, begin = [], None
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == BEGIN:
            begin = number
        elif line.strip() == END and begin is not None:
            regions.append((begin, number))
            begin = None
    return regions


def _inside(node: ast.AST, regions) -> bool:
    start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
    return start is not None and any(b < start and end < e for b, e in regions)


def _parents(tree: ast.AST) -> dict[int, tuple[ast.AST, str, int | None]]:
    parents = {}
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        parents[id(child)] = (parent, name, i)
            elif isinstance(value, ast.AST):
                parents[id(value)] = (parent, name, None)
    return parents


def _replace(parents, node, new):
    parent, name, index = parents[id(node)]
    ast.copy_location(new, node)
    if index is None:
        setattr(parent, name, new)
    else:
        getattr(parent, name)[index] = new


def _number(node):
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _literal_int(node):
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return value if type(value) is int else None


def _mentions(node, name) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


_COMPARE_SWAPS = {
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt, ast.GtE),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
_BINOP_SWAPS = {
    ast.Add: (ast.Sub,),
    ast.Sub: (ast.Add,),
    ast.Mult: (ast.Div,),
    ast.Div: (ast.Mult, ast.FloorDiv),
    ast.FloorDiv: (ast.Mod, ast.Div),
    ast.Mod: (ast.FloorDiv,),
    ast.MatMult: (ast.Mult,),
    ast.Pow: (ast.Mult,),
    ast.BitAnd: (ast.BitOr,),
    ast.BitOr: (ast.BitAnd,),
    ast.LShift: (ast.RShift,),
    ast.RShift: (ast.LShift,),
}
_DIM_KEYWORDS = ("dim", "axis")
# Keywords whose removal is a plausible bug (a default that differs from what is needed).
_DROPPABLE_KEYWORDS = {
    "dim",
    "axis",
    "minlength",
    "padding",
    "stride",
    "ceil_mode",
    "bias",
    "dtype",
    "keepdim",
    "ignore_index",
    "min",
    "max",
    "size",
    "device",
    "kernel_size",
    "dims",
    "weights_only",
    "align_corners",
    "mode",
    "groups",
    "dilation",
    "output_padding",
    "batch_size",
}


def _sites(tree: ast.AST, regions):
    """Yield (node index in ast.walk order, operator, variant, description) for every mutation."""
    for index, node in enumerate(ast.walk(tree)):
        if not _inside(node, regions):
            continue
        if _number(node):
            value = node.value
            deltas = (1, -1) if type(value) is int else (0.5, -0.5)
            deltas = deltas + ((0.5, -0.5) if type(value) is int and value in (0, 1, 2) else ())
            for delta in deltas:
                yield index, "const", value + delta, f"constant {value!r} -> {value + delta!r}"
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for new in _COMPARE_SWAPS.get(type(op), ()):
                    yield index, "compare", (i, new), f"comparison {type(op).__name__} -> {new.__name__}"
            if any(_mentions(c, "ignore_index") for c in [node.left, *node.comparators]):
                yield index, "ignore", None, "ignore_index comparison made always true"
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            for new in _BINOP_SWAPS.get(type(node.op), ()):
                yield index, "arith", new, f"operator {type(node.op).__name__} -> {new.__name__}"
            if isinstance(node, ast.BinOp):
                yield index, "operand", "left", "binary operation replaced by its left operand"
                yield index, "operand", "right", "binary operation replaced by its right operand"
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            yield index, "boolop", new, f"boolean {type(node.op).__name__} -> {new.__name__}"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.Invert)):
            yield index, "unary", None, f"unary {type(node.op).__name__} removed"
        elif isinstance(node, ast.Call):
            for i in range(len(node.args) - 1):
                if ast.dump(node.args[i]) != ast.dump(node.args[i + 1]) and not any(
                    isinstance(a, ast.Starred) for a in node.args[i : i + 2]
                ):
                    yield index, "swap_args", i, f"arguments {i} and {i + 1} of a call swapped"
            for i, keyword in enumerate(node.keywords):
                current = _literal_int(keyword.value) if keyword.arg in _DIM_KEYWORDS else None
                if current is not None:
                    for other in sorted({0, 1, -1, -2, current + 1} - {current}):
                        yield index, "dim", (i, other), f"{keyword.arg}={current} -> {keyword.arg}={other}"
                if keyword.arg in _DROPPABLE_KEYWORDS:
                    yield index, "drop_kwarg", i, f"keyword {keyword.arg}= dropped"
        elif isinstance(node, ast.Slice):
            if node.lower is not None:
                yield index, "slice", "lower+1", "slice start + 1"
                yield index, "slice", "lower=None", "slice start removed"
            if node.upper is not None:
                yield index, "slice", "upper-1", "slice stop - 1"
                yield index, "slice", "upper+1", "slice stop + 1"
                yield index, "slice", "upper=None", "slice stop removed"
        if isinstance(node, ast.stmt) and not isinstance(node, (ast.Pass, ast.FunctionDef, ast.ClassDef)):
            yield index, "drop_stmt", None, f"statement dropped ({type(node).__name__})"
        elif isinstance(node, ast.Return) and node.value is not None:
            pass


def _apply(tree: ast.AST, index: int, operator: str, variant) -> ast.AST:
    """Mutate node number `index` (ast.walk order) of `tree` in place; returns the mutated node's statement."""
    nodes = list(ast.walk(tree))
    node = nodes[index]
    parents = _parents(tree)
    if operator == "const":
        node.value = variant
    elif operator == "compare":
        i, new = variant
        node.ops[i] = new()
    elif operator == "ignore":
        _replace(parents, node, ast.Constant(True))
    elif operator == "arith":
        node.op = variant()
    elif operator == "operand":
        _replace(parents, node, getattr(node, variant))
    elif operator == "boolop":
        node.op = variant()
    elif operator == "unary":
        _replace(parents, node, node.operand)
    elif operator == "swap_args":
        i = variant
        node.args[i], node.args[i + 1] = node.args[i + 1], node.args[i]
    elif operator == "dim":
        i, other = variant
        node.keywords[i].value = ast.parse(repr(other), mode="eval").body
    elif operator == "drop_kwarg":
        del node.keywords[variant]
    elif operator == "slice":
        if variant == "lower+1":
            node.lower = ast.BinOp(node.lower, ast.Add(), ast.Constant(1))
        elif variant == "lower=None":
            node.lower = None
        elif variant == "upper-1":
            node.upper = ast.BinOp(node.upper, ast.Sub(), ast.Constant(1))
        elif variant == "upper+1":
            node.upper = ast.BinOp(node.upper, ast.Add(), ast.Constant(1))
        elif variant == "upper=None":
            node.upper = None
    elif operator == "drop_stmt":
        _replace(parents, node, ast.Pass())
        return node
    else:
        raise ValueError(f"unknown operator {operator}")
    return node


def _enclosing_statement(tree, target_index, regions):
    """The innermost statement inside a solution region that contains node `target_index`."""
    nodes = list(ast.walk(tree))
    target = nodes[target_index]
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and _inside(node, regions) and any(n is target for n in ast.walk(node)):
            if best is None or (node.end_lineno - node.lineno) <= (best.end_lineno - best.lineno):
                best = node
    return best


def _signatures(tree) -> list[str]:
    """Names, arguments and bases of the cell's functions and classes (what the stub fixes)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(f"def {node.name}{ast.dump(node.args)}")
        elif isinstance(node, ast.ClassDef):
            out.append(f"class {node.name}{[ast.dump(b) for b in node.bases]}")
    return out


def mutants_of(grade_id: str, source: str) -> list[Mutant]:
    """Every distinct, valid single mutation of the solution regions of one cell (deterministic order)."""
    regions = solution_regions(source)
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    signature = _signatures(tree)
    seen = {source}
    result = []
    for index, operator, variant, description in list(_sites(tree, regions)):
        fresh = ast.parse(source)
        statement = _enclosing_statement(fresh, index, regions)
        if statement is None:
            continue
        start, end, indent = statement.lineno, statement.end_lineno, statement.col_offset
        before = ast.unparse(statement)
        mutated_node = _apply(fresh, index, operator, variant)
        if operator == "drop_stmt":
            # the dropped statement is its own enclosing statement: it becomes `pass`
            statement_text = "pass"
        else:
            statement_text = ast.unparse(statement)
            if statement_text == before:
                continue  # a no-op mutation (e.g. -x -> -x after constant folding)
        del mutated_node
        new_lines = "".join(" " * indent + line + "\n" for line in statement_text.splitlines())
        head = "".join(lines[: start - 1])
        first = lines[start - 1]
        if first[:indent].strip():  # the statement does not start its line (`a; b`): skip
            continue
        mutated = head + new_lines + "".join(lines[end:])
        if mutated in seen:
            continue
        try:
            mutated_tree = ast.parse(mutated)
        except SyntaxError:
            continue
        if _signatures(mutated_tree) != signature or len(solution_regions(mutated)) != len(regions):
            continue
        seen.add(mutated)
        digest = hashlib.sha1(f"{grade_id}\n{mutated}".encode()).hexdigest()[:10]
        result.append(Mutant(grade_id, operator, f"{operator}-{digest}", start, description, mutated))
    return result


def sample(mutants: list[Mutant], limit: int | None) -> list[Mutant]:
    """At most `limit` mutants, operators taking turns, each operator's mutants in id order."""
    if limit is None or len(mutants) <= limit:
        return list(mutants)
    by_operator = defaultdict(list)
    for mutant in sorted(mutants, key=lambda m: m.mutant_id):
        by_operator[mutant.operator].append(mutant)
    queues = [by_operator[name] for name in sorted(by_operator)]
    chosen = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return sorted(chosen, key=lambda m: (m.line, m.mutant_id))


# --- grading ------------------------------------------------------------------------------------

FIRST_SLOT = 200  # worker slots of mutation testing: apart from a grading run's (0, 1, ...) on the same host


def grade_mutant(assignment: str, mutant: Mutant, cache_dir: str, slot: int = FIRST_SLOT) -> dict:
    """Grade the solution notebook with one cell replaced by the mutant, with that unit's checks only."""
    from grader.assignments import load_assignment, read_notebook
    from grader.run.config import WorkerConfig
    from grader.runner import grade
    from grader.sandbox import Limits
    from segkit.proof.examples import replace_sources
    from starter.common import write_notebook

    os.environ.setdefault("SEGKIT_FAST", "1")
    spec = load_assignment(assignment)
    notebook = replace_sources(read_notebook(spec.solution_path), {mutant.grade_id: mutant.source})
    limits = Limits(probe_timeout=30, cell_timeout=60, submission_timeout=240)
    worker = WorkerConfig(limits=limits, slot=slot)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="segkit-mutant-") as folder:
        path = Path(folder) / f"{assignment}.ipynb"
        write_notebook(path, notebook)
        try:
            result = grade(
                spec, path, mutant.mutant_id, worker=worker, units={mutant.grade_id}, cache_dir=Path(cache_dir)
            )
        except Exception as exc:  # the grader itself failed: reported, never counted as caught
            return {
                "status": "error",
                "detail": f"{type(exc).__name__}: {exc}"[:300],
                "seconds": round(time.time() - started, 1),
            }
    unit = result.units[mutant.grade_id]
    failed = [check.test for check in unit.failed_checks]
    status = "caught" if unit.points < unit.max_points else "survived"
    return {
        "status": status,
        "points": unit.points,
        "max_points": unit.max_points,
        "failed": failed,
        "seconds": round(time.time() - started, 1),
    }


def grade_mutant_task(task: tuple[str, Mutant], cache_dir: str, slot: int) -> str:
    """A task of the pool (grader.run.pool): one mutant's outcome as JSON text."""
    assignment, mutant = task
    return json.dumps(grade_mutant(assignment, mutant, cache_dir, slot))


def outcome_of(status, text: str) -> dict:
    """A mutant's outcome from the pool's answer; a grading process that raised or died twice is an
    error (reported, never counted as caught)."""
    from grader.run.pool import Status

    if status is Status.OK:
        return json.loads(text)
    detail = text if status is Status.ERROR else f"the grading process died twice ({text})"
    return {"status": "error", "detail": detail[:300], "seconds": 0.0}


def collect(assignments, units, max_per_unit, expensive_max):
    from grader.assignments import load_assignment

    plan = []  # (assignment, grade_id, generated count, sampled mutants)
    for name in assignments:
        spec = load_assignment(name)
        for unit in spec.auto_units:
            if units and unit.grade_id not in units:
                continue
            every = mutants_of(unit.grade_id, unit.source)
            limit = expensive_max if unit.grade_id in spec.config.expensive_units else max_per_unit
            plan.append((name, unit.grade_id, len(every), sample(every, limit)))
    return plan


def default_assignments() -> list[str]:
    from grader.assignments import assignment_names

    return assignment_names()


def write_report(path: Path, plan, outcomes, command: str, seconds: float, jobs: int, reused: int = 0):
    from segkit.docs import current_commit

    rows, survivors, errors = [], [], []
    equivalent_reasons = equivalent_mutants()
    totals = defaultdict(int)
    for name, grade_id, generated, chosen in plan:
        counts = defaultdict(int)
        for mutant in chosen:
            outcome = outcomes[(grade_id, mutant.mutant_id)]
            status = outcome["status"]
            if status == "survived" and (grade_id, mutant.mutant_id) in equivalent_reasons:
                status = "equivalent"
            counts[status] += 1
            if status == "survived":
                survivors.append((grade_id, mutant))
            elif status == "error":
                errors.append((grade_id, mutant, outcome["detail"]))
        killable = len(chosen) - counts["equivalent"] - counts["error"]
        score = counts["caught"] / killable if killable else 1.0
        rows.append(
            f"| {name} | `{grade_id}` | {generated} | {len(chosen)} | {counts['caught']} | "
            f"{counts['equivalent']} | {counts['survived']} | {counts['error']} | {score:.0%} |"
        )
        totals["generated"] += generated
        totals["graded"] += len(chosen)
        for key in ("caught", "equivalent", "survived", "error"):
            totals[key] += counts[key]
    killable = totals["graded"] - totals["equivalent"] - totals["error"]
    overall = totals["caught"] / killable if killable else 1.0
    text = [
        "# Mutation report: does every bug in a solution lose points?",
        "",
        f"> Generated from commit {current_commit()} on {datetime.date.today().isoformat()}: the code may have changed "
        "since; `make mutants` regenerates this page.",
        "",
        "Generated by `segkit/proof/mutate.py` (do not edit by hand). Each mutant is the solution notebook with one",
        "small change inside one graded cell's `### BEGIN/END SOLUTION` region, graded with only that",
        "unit's hidden checks. *Caught*: the unit lost points. *Equivalent*: survived, but listed in",
        "its assignment.toml (`[[proof.equivalent]]`) with the reason it computes the same thing. *Score* = caught /",
        "(graded - equivalent - error).",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.date.today().isoformat()}, {seconds / 60:.1f} min with {jobs} process(es), "
        f"{os.cpu_count()} CPU core(s)"
        + (f"; {reused} caught outcome(s) reused from an earlier run (`--reuse`)" if reused else ""),
        f"- sampling: at most {plan and max(len(c) for *_, c in plan)} mutants per unit, chosen deterministically "
        "(operators take turns, each operator's mutants in id order); VGG-based units "
        f"({', '.join(sorted(expensive_units()))}) are capped lower because one grading costs 10-20 s",
        "",
        "| assignment | unit | generated | graded | caught | equivalent | survived | error | score |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| **all** | | {totals['generated']} | {totals['graded']} | {totals['caught']} | {totals['equivalent']} | "
        f"{totals['survived']} | {totals['error']} | **{overall:.1%}** |",
        "",
    ]
    if survivors:
        text += ["## Surviving mutants (not yet killed or shown equivalent)", ""]
        for grade_id, mutant in survivors:
            text.append(f"- `{grade_id}` `{mutant.mutant_id}` line {mutant.line}: {mutant.description}")
        text.append("")
    if errors:
        text += ["## Grading errors", ""]
        for grade_id, mutant, detail in errors:
            text.append(f"- `{grade_id}` `{mutant.mutant_id}`: {detail}")
        text.append("")
    equivalent = sorted(equivalent_reasons.items())
    if equivalent:
        text += ["## Equivalent mutants (from each assignment.toml's `[[proof.equivalent]]`)", ""]
        text += [f"- `{g}` `{m}`: {reason}" for (g, m), reason in equivalent]
        text.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text), encoding="utf-8")
    return totals, overall


def reused_outcomes(path: Path | None) -> dict:
    """The caught outcomes of a previous --json (checks only get stronger: a caught mutant stays caught)."""
    outcomes = {}
    if path and path.exists():
        for row in json.loads(path.read_text()):
            if row["status"] == "caught":
                outcomes[(row["grade_id"], row["mutant_id"])] = {**row, "reused": True}
    return outcomes


def grade_mutants(plan, outcomes: dict, cache_dir: str, processes: int) -> None:
    """Grade every sampled mutant without an outcome yet into `outcomes`, in the grading run's pool
    (grader.run.pool), printing each as it ends."""
    from grader.run.pool import run_pool

    jobs = [
        (name, mutant)
        for name, _, _, chosen in plan
        for mutant in chosen
        if (mutant.grade_id, mutant.mutant_id) not in outcomes
    ]
    print(f"grading {len(jobs)} mutants of {len(plan)} units with {processes} process(es)", flush=True)
    equivalent_reasons = equivalent_mutants()
    done = 0

    def on_answer(index: int, status, text: str) -> None:
        nonlocal done
        done += 1
        name, mutant = jobs[index]
        outcome = outcomes[(mutant.grade_id, mutant.mutant_id)] = outcome_of(status, text)
        mark = outcome["status"]
        if mark == "survived" and (mutant.grade_id, mutant.mutant_id) in equivalent_reasons:
            mark = "equivalent"
        print(
            f"[{done}/{len(jobs)}] {name}/{mutant.grade_id} {mutant.mutant_id} {mark} "
            f"({outcome['seconds']} s): {mutant.description}",
            flush=True,
        )

    # Jobs come grouped by assignment, so each process builds few reference namespaces.
    run_pool(jobs, grade_mutant_task, cache_dir, processes, on_answer, first_slot=FIRST_SLOT)


def write_outcomes(path: Path, plan, outcomes: dict) -> None:
    """Every sampled mutant's outcome as JSON (what --reuse reads back)."""
    rows = [
        {
            **outcomes[(m.grade_id, m.mutant_id)],
            "assignment": name,
            "grade_id": m.grade_id,
            "mutant_id": m.mutant_id,
            "operator": m.operator,
            "line": m.line,
            "description": m.description,
        }
        for name, _, _, chosen in plan
        for m in chosen
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segkit.proof.mutate", description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", action="append", help="only this assignment (repeatable)")
    parser.add_argument("--unit", action="append", help="only this grade_id (repeatable)")
    parser.add_argument(
        "--max-per-unit",
        type=int,
        default=DEFAULT_MAX_PER_UNIT,
        help=f"deterministic sample per unit (default {DEFAULT_MAX_PER_UNIT}; 0 = all)",
    )
    parser.add_argument(
        "--expensive-max",
        type=int,
        default=EXPENSIVE_MAX_PER_UNIT,
        help=f"cap for VGG-based units (default {EXPENSIVE_MAX_PER_UNIT})",
    )
    parser.add_argument("--report", type=Path, help="write a Markdown report here")
    parser.add_argument("--json", type=Path, help="write every mutant's outcome here")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "segkit-mutation-cache",
        help="reference probe cache",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        help="a previous --json: reuse its 'caught' outcomes (checks only "
        "ever get stronger, so a caught mutant stays caught); survivors and errors are regraded",
    )
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="print the sampled mutants, grade nothing")
    args = parser.parse_args(argv)

    assignments = args.assignment or default_assignments()
    units = set(args.unit or ())
    limit = args.max_per_unit or None
    expensive = min(args.expensive_max, limit) if limit else args.expensive_max
    plan = collect(assignments, units, limit, expensive)
    if args.list:
        for name, grade_id, generated, chosen in plan:
            print(f"== {name}/{grade_id}: {generated} generated, {len(chosen)} sampled")
            for mutant in chosen:
                print(f"  {mutant.mutant_id} line {mutant.line}: {mutant.description}")
        return 0

    outcomes = reused_outcomes(args.reuse)
    reused = sum(1 for *_, chosen in plan for m in chosen if (m.grade_id, m.mutant_id) in outcomes)
    if reused:
        print(f"reusing {reused} caught outcome(s) from {args.reuse}")
    started = time.time()
    grade_mutants(plan, outcomes, str(args.cache), args.jobs)
    seconds = time.time() - started
    command = "python -m segkit.proof.mutate " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        write_outcomes(args.json, plan, outcomes)
    report = args.report or Path(tempfile.gettempdir()) / "mutation-report.md"
    totals, overall = write_report(report, plan, outcomes, command.strip(), seconds, args.jobs, reused)
    print(
        f"\n{totals['caught']} caught, {totals['equivalent']} equivalent, {totals['survived']} survived, "
        f"{totals['error']} errors of {totals['graded']} graded ({totals['generated']} generated); "
        f"score {overall:.1%}; {seconds / 60:.1f} min; report: {report}"
    )
    return 1 if totals["survived"] or totals["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
