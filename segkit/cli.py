"""`segkit`: the course kit's one command, with verbs (nbgrader/otter style).

    segkit grade [SUBMISSIONS ...] [--assignment A] ...   grade (no folder: the bundled example submissions)
    segkit collect OUT SHARD_DIR... [--submissions S]      merge `grade --shard K/N` folders into one gradebook
    segkit slurm [SUBMISSIONS ...] --shards N [--submit]   a Slurm job array grading N slices, then collect
    segkit generate                                        notebooks/ and starter/assignments.json from solutions/
    segkit check                                           drift from solutions/, and every assignment complete
    segkit release [--assignments fcn,cam]                 dist/student-bundle.zip for students
    segkit gradescope --assignment A [--out ZIP]           a Gradescope autograder zip
    segkit examples                                        write the bundled example submissions to build/examples
    segkit mutants [...]                                   mutation-test the hidden checks
    segkit submit --student ID [...]                       (students) check and pack notebooks to hand in
    segkit new-assignment NAME [--title T]                 scaffold assignments/NAME and a one-unit solution
    segkit results [--only fcn] [--report-only]            solution notebooks on real data -> docs/results.md
    segkit gradebook --grades DIR --course C [--lms-csv]   scores into nbgrader's gradebook/feedback; LMS CSV
    segkit similarity [SUBMISSIONS ...] [--assignment A]   code similarity report -> grades/similarity/<a>/
    segkit written [SUBMISSIONS ...] [--merge]             written answers per student (HTML) + rubric.csv to fill
    segkit docs [--check]                                  the docs' quoted figures from docs/figures/*.json

Installed as a console script by `pip install -e .[grader]`; `python -m segkit VERB` and the
Make targets are the same thing. Options after the verb go to the underlying tool
(`segkit grade --help`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable


def _grade(argv: list[str]) -> int:
    from grader import cli

    parser = cli.build_parser("segkit grade")
    options = parser.parse_args(argv)  # the one parse: exits on --help or a bad option
    if not options.paths:
        from grader.assignments import REPO_ROOT
        from segkit.proof.examples import EXAMPLES_DIR, build_examples

        build_examples(assignments=[options.assignment] if options.assignment else None)
        print(f"No submissions given: grading the bundled examples in {EXAMPLES_DIR.relative_to(REPO_ROOT)}/")
        options.paths = [EXAMPLES_DIR]
    return cli.grade(options, parser)


def _generate(argv: list[str]) -> int:
    from segkit.build import generate, release

    return generate.main(argv) or release.main(["--manifest"])


def _check(argv: list[str]) -> int:
    from segkit.build import completeness, generate, release

    return generate.main(["--check", *argv]) or release.main(["--check-manifest"]) or completeness.main([])


def _delegate(module: str) -> Callable[[list[str]], int]:
    """A verb that is another module's `main(argv)`, imported only when the verb runs."""

    def run(argv: list[str]) -> int:
        return importlib.import_module(module).main(argv)

    return run


VERBS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "grade": (_grade, "grade submissions (none given: the bundled examples)"),
    "collect": (_delegate("integrations.collect"), "merge the folders of `segkit grade --shard K/N` runs"),
    "slurm": (_delegate("segkit.slurm"), "write (and --submit) a Slurm job array grading slices, then collect"),
    "generate": (_generate, "regenerate notebooks/ and starter/assignments.json from solutions/"),
    "check": (_check, "fail when notebooks/ or the manifest drifted from solutions/, or an assignment is incomplete"),
    "release": (_delegate("segkit.build.release"), "build dist/student-bundle.zip"),
    "gradescope": (_delegate("segkit.build.gradescope_zip"), "build a Gradescope autograder zip"),
    "examples": (
        _delegate("segkit.proof.examples"),
        "write the bundled example submissions (build/examples/submitted)",
    ),
    "mutants": (_delegate("segkit.proof.mutate"), "mutation-test the hidden checks"),
    "submit": (_delegate("starter.submit"), "check and pack notebooks to hand in (students)"),
    "new-assignment": (_delegate("segkit.build.scaffold"), "scaffold a new assignment folder and one-unit solution"),
    "results": (_delegate("segkit.results"), "run the solution notebooks on real data; write docs/results.md"),
    "gradebook": (
        _delegate("integrations.gradebook"),
        "a grades folder into nbgrader's gradebook.db and feedback/, and/or an LMS CSV",
    ),
    "similarity": (
        _delegate("segkit.similarity"),
        "rank pairs of submissions (and corpus entries) that share code; HTML + CSV report",
    ),
    "docs": (_delegate("segkit.docs"), "render the figures the docs quote from docs/figures/*.json (--check: drift)"),
    "written": (
        _delegate("segkit.written"),
        "written answers per student as HTML for grading by hand, a rubric CSV; --merge adds its scores",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        parser = argparse.ArgumentParser(
            prog="segkit",
            description=__doc__.splitlines()[0],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="verbs:\n" + "\n".join(f"  {v:<15} {h}" for v, (_, h) in VERBS.items()),
        )
        parser.print_help()
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"segkit: unknown verb {verb!r}; one of: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    return int(VERBS[verb][0](rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
