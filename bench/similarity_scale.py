"""The similarity report at course scale, and its false-positive rate per unit before and after calibration.

    python bench/similarity_scale.py [--students 500] [--assignment unet] [--skip-fpr] [--skip-scale]

1. False positives, per unit of every assignment: the share of *held-out* pairs of independent correct
   implementations (variants generated with another seed than the calibration's, of the solution, the
   alternatives and similarity_corpus/independent/) that are flagged by the old rule (a fixed 0.6) and by
   each unit's calibrated default threshold; with the calibration's own (in-sample) rate.
2. Scale: `--students` synthetic submissions of one assignment, each unit a restyled variant of one of its
   independent implementations (drawn from a pool, so two students may hold the same variant: a copy), each
   cell a distinct text (tokenized on its own), plus planted copies (another student's cells renamed and
   re-commented). Prints the time to tokenize, to compare and to write the report, the process's peak
   memory, the pairs compared per second, and whether every planted copy is flagged.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import random
import resource
import sys
import tempfile
import time
import tokenize
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from grader.assignments import assignment_names, load_assignment
from segkit import similarity

OLD_THRESHOLD = 0.6  # the fixed threshold of the report before calibration
POOL = 60  # variants per unit the synthetic class draws from


def cpu_s() -> float:
    """CPU seconds of this process and its finished children: on a shared machine the load-independent figure."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disguise(source: str) -> str:
    """A planted copy: every bound name renamed, every comment rewritten (as tests/test_similarity.py)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        text = token.string
        if token.type == tokenize.NAME and text in bound:
            text = f"my_{text}_2"
        elif token.type == tokenize.COMMENT:
            text = "# my own idea"
        tokens.append((token.type, text))
    return tokenize.untokenize(tokens)


def false_positive_rates(alpha: float) -> None:
    print(f"## False-positive rate per unit (held-out independent pairs), alpha = {alpha}")
    print(
        f"{'unit':22s} {'impl':>4s} {'pairs':>5s} {'old 0.6':>8s} {'threshold':>9s} {'in-sample':>9s} {'held-out':>8s}"
    )
    worst = 0.0
    for name in assignment_names():
        spec = load_assignment(name)
        boilerplate = similarity.boilerplate_texts(spec)
        fingerprints = similarity.Fingerprinter(boilerplate.values())
        calibration = similarity.load_or_compute_calibration(spec, boilerplate, fingerprints)
        held_out = similarity.compute_null(spec, fingerprints, salt="/held-out")
        for unit, null in calibration.units.items():
            threshold = null.threshold(alpha, similarity.MIN_OVERLAP)
            fresh = held_out[unit]
            old = np.mean([s >= OLD_THRESHOLD and o >= similarity.MIN_OVERLAP for s, o in fresh.pairs])
            inside = np.mean(null.effective(similarity.MIN_OVERLAP) > threshold + similarity.ROUNDING)
            after = np.mean(fresh.effective(similarity.MIN_OVERLAP) > threshold + similarity.ROUNDING)
            worst = max(worst, after)
            print(
                f"{name + ':' + unit:22.22s} {null.implementations:4d} {len(fresh.pairs):5d} {old:8.1%} "
                f"{threshold:9.2f} {inside:9.1%} {after:8.1%}"
            )
    print(f"highest held-out rate at the default threshold: {worst:.1%}")


def synthetic_class(spec, students: int, copies: int, seed: int = 0) -> list[similarity.Source]:
    rng = random.Random(seed)
    families = similarity.unit_families(spec)
    pools = {}
    for unit, implementations in families.items():
        made = similarity.variant_families(spec.name, unit, implementations, POOL, salt="/bench")
        pools[unit] = [text for family in made for text in family]
    sources = []
    for k in range(students):
        # a comment of its own: every cell a distinct text, tokenized on its own as a real class's would be
        cells = {unit: f"# student {k}\n{rng.choice(pool)}" for unit, pool in pools.items()}
        sources.append(similarity.Source(f"s{k:04d}", similarity.STUDENT, cells))
    for k in range(copies):
        original = sources[rng.randrange(students)]
        cells = {unit: disguise(code) for unit, code in original.cells.items()}
        sources.append(similarity.Source(f"copy{k}-of-{original.name}", similarity.STUDENT, cells))
    return sources


def scale(assignment: str, students: int, copies: int, jobs: int | None) -> None:
    spec = load_assignment(assignment)
    start = time.perf_counter()
    sources = synthetic_class(spec, students, copies)
    print(f"\n## {students} synthetic submissions of {assignment} + {copies} planted copies")
    print(f"generated in {time.perf_counter() - start:.1f} s")
    boilerplate = similarity.boilerplate_texts(spec)
    fingerprints = similarity.Fingerprinter(boilerplate.values())
    corpus = similarity.corpus_sources(spec)
    calibration = similarity.load_or_compute_calibration(spec, boilerplate, fingerprints)
    baseline = peak_rss_mb()
    grade_ids = [u.grade_id for u in spec.auto_units]
    start, cpu = time.perf_counter(), cpu_s()
    texts = [t for source in [*sources, *corpus] for unit in grade_ids for t in source.parts(unit, grade_ids)]
    fingerprints.prefetch(texts, jobs)  # as analyse() does: tokenized in `jobs` processes
    for text in texts:
        fingerprints.prints(text)
    tokenize_s, tokenize_cpu = time.perf_counter() - start, cpu_s() - cpu
    start, cpu = time.perf_counter(), cpu_s()
    report = similarity.analyse(spec, sources, corpus, calibration=calibration, fingerprints=fingerprints)
    compare_s, compare_cpu = time.perf_counter() - start, cpu_s() - cpu
    start, cpu = time.perf_counter(), cpu_s()
    with tempfile.TemporaryDirectory() as out:
        page, table = similarity.write_report(report, Path(out))
        sizes = page.stat().st_size / 1e6, table.stat().st_size / 1e6
    write_s, write_cpu = time.perf_counter() - start, cpu_s() - cpu
    n = len(sources)
    compared = (n * (n - 1) // 2 + n * len(corpus)) * len(report.units)
    flagged = report.flagged
    planted = {s.name for s in sources if s.name.startswith("copy")}
    caught = {
        (p.name_a if p.name_a in planted else p.name_b, p.unit)
        for p in flagged
        if {p.name_a, p.name_b} & planted
        and (p.name_a.split("-of-")[-1] in (p.name_b, p.name_a) or p.name_b.split("-of-")[-1] == p.name_a)
    }
    missed = [(c, u) for c in planted for u in report.units if (c, u) not in caught]
    print(f"load average while it ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times grow with it)")
    print(
        f"tokenize {n} x {len(grade_ids)} cells in {jobs or os.cpu_count()} process(es): {tokenize_s:.1f} s "
        f"({tokenize_cpu:.1f} CPU s)"
    )
    print(
        f"compare {compared:,} pairs x units: {compare_s:.1f} s ({compare_cpu:.1f} CPU s) = "
        f"{compared / compare_s:,.0f} pairs/s ({compared / max(compare_cpu, 1e-9):,.0f} per CPU second)"
    )
    print(
        f"write report.html ({sizes[0]:.1f} MB) and pairs.csv ({sizes[1]:.1f} MB, {len(report.pairs):,} rows): "
        f"{write_s:.1f} s ({write_cpu:.1f} CPU s)"
    )
    total_cpu = tokenize_cpu + compare_cpu + write_cpu
    print(
        f"total {tokenize_s + compare_s + write_s:.1f} s ({total_cpu:.1f} CPU s); "
        f"peak memory {peak_rss_mb():.0f} MB (before the class: {baseline:.0f} MB)"
    )
    print(
        f"flagged pairs: {len(flagged):,} (two students drawing variants of one implementation are a restyled copy); planted copies flagged in every unit: {not missed} (missed: {missed[:5]})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--assignment", default="unet")
    parser.add_argument("--alpha", type=float, default=similarity.DEFAULT_ALPHA)
    parser.add_argument("--jobs", type=int, help="processes that tokenize (default: every CPU)")
    parser.add_argument("--skip-fpr", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    options = parser.parse_args()
    if not options.skip_fpr:
        false_positive_rates(options.alpha)
    if not options.skip_scale:
        scale(options.assignment, options.students, options.copies, options.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
