"""`segkit collect OUT SHARD_DIR...`: merge the folders of sharded grading runs into one gradebook.

    python -m grader SUBMISSIONS --shard 1/3 --out grades/shards/1     # on three machines (or
    python -m grader SUBMISSIONS --shard 2/3 --out grades/shards/2     # three Slurm array tasks:
    python -m grader SUBMISSIONS --shard 3/3 --out grades/shards/3     # `segkit slurm`)
    python -m integrations.collect grades grades/shards/* --submissions SUBMISSIONS

Copies every shard's results/<assignment>/<student>.json (byte for byte, fingerprint included) and
its worker log into OUT, then renders grades.csv, report.md, feedback/ and gradescope/ with the very
code a normal run uses (`grader.run.render.render_outputs`): the same results give the same bytes as one
machine grading everything. A plain `python -m grader SUBMISSIONS --out OUT` afterwards reuses every
merged result and grades only what is missing.

Reported, and the exit status is 1:
- conflicts: one student and assignment in two folders with different fingerprints or different
  grades (a stale folder, or a shard graded twice with another grader). With --submissions, the
  one whose fingerprint matches the current notebook and grader wins; otherwise none is kept.
- missing: a submission (from --submissions, else from the shards' run.json) without a result,
  e.g. a shard that failed, was killed or never ran;
- stale (with --submissions): a result graded from another version of the notebook or the grader;
  a re-run would grade it again, so it is left out;
- shards: a slice K/N for which no folder has a run.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grader.assignments import assignment_names
from grader.report import feedback_markdown
from grader.results import SubmissionResult
from grader.run.discovery import Shard, discover
from grader.run.grading import units_map
from grader.run.render import render_outputs
from grader.run.store import RUN_MANIFEST, RunManifest, expected_fingerprints, read_cached_result
from grader.sandbox import PROTECTION_TEXT, Protection
from starter.common import write_atomic

Key = tuple[str, str]  # (student_id, assignment)


@dataclass
class ShardResult:
    """One folder's result for one submission."""

    folder: Path
    path: Path
    result: SubmissionResult

    @property
    def grade(self) -> str:
        """What the student and the gradebook see; timings and memory may differ between runs."""
        return json.dumps([self.result.total, self.result.max_points, feedback_markdown(self.result)])


@dataclass
class Merge:
    kept: dict[Key, ShardResult] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)  # not kept: the folders disagree
    resolved: list[str] = field(default_factory=list)  # disagreed, but one matched the current fingerprint
    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # results of students not among the submissions
    shards: list[str] = field(default_factory=list)  # problems with the set of slices
    unreadable: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.conflicts or self.stale or self.missing or self.shards or self.unreadable)


def gather(folders: list[Path], merge: Merge) -> dict[Key, list[ShardResult]]:
    """Every result in the folders, by (student, assignment); unreadable files are reported."""
    found: dict[Key, list[ShardResult]] = {}
    known = set(assignment_names())
    for folder in folders:
        if not folder.is_dir():
            merge.shards.append(f"{folder}: no such folder (did that task run?)")
            continue
        for path in sorted((folder / "results").glob("*/*.json")):
            result = read_cached_result(path)
            if result is None or (result.student_id, result.assignment) != (path.stem, path.parent.name):
                merge.unreadable.append(f"{path}: not a result of {path.parent.name}/{path.stem}")
                continue
            if result.assignment not in known:
                merge.unreadable.append(f"{path}: assignment {result.assignment!r} is not in this kit")
                continue
            found.setdefault((result.student_id, result.assignment), []).append(ShardResult(folder, path, result))
    return found


def _where(candidates: list[ShardResult]) -> str:
    return ", ".join(f"{c.folder} (fingerprint {c.result.fingerprint}, {c.result.total:g} points)" for c in candidates)


def choose(key: Key, candidates: list[ShardResult], expected: str | None, merge: Merge):
    """Keep one result for `key`, or report why none is kept."""
    label = f"{key[0]}/{key[1]}"
    current = [c for c in candidates if expected is None or c.result.fingerprint == expected]
    if not current:
        merge.stale.append(f"{label}: graded from another notebook or grader version in {_where(candidates)}")
        return
    if len({(c.result.fingerprint, c.grade) for c in current}) > 1:
        merge.conflicts.append(f"{label}: different results in {_where(current)}")
        return
    if len({(c.result.fingerprint, c.grade) for c in candidates}) > 1:
        merge.resolved.append(f"{label}: kept {current[0].folder}, the current version; also in {_where(candidates)}")
    merge.kept[key] = current[0]


def check_shards(manifests: dict[Path, RunManifest | None], merge: Merge):
    """Every slice K/N present once (from the folders' run.json)."""
    slices: dict[int, set[int]] = {}
    for folder, manifest in manifests.items():
        if manifest is None:
            if folder.is_dir():
                merge.shards.append(f"{folder}: no {RUN_MANIFEST} (the run did not finish; its results are used)")
            continue
        if manifest.shard:
            shard = Shard.parse(manifest.shard)
            slices.setdefault(shard.count, set()).add(shard.index)
    if len(slices) > 1:
        merge.shards.append(f"the folders come from different splits: {', '.join(f'N={n}' for n in sorted(slices))}")
    for count, indices in slices.items():
        for index in sorted(set(range(1, count + 1)) - indices):
            merge.shards.append(f"shard {index}/{count}: no folder with its {RUN_MANIFEST}")


def merged_protections(manifests: list[RunManifest], results: list[SubmissionResult]) -> tuple[list[Protection], bool]:
    """The protections every run had (a protection missing from one run is not active for the merged
    gradebook; differing mechanisms are all named) and whether any ran unsafe. Runs without a
    manifest (older versions) count by the protection names their results record."""
    runs = [m.protections for m in manifests]
    if not runs:
        names = [set(r.protections) for r in results]
        common = set.intersection(*names) if names else set()
        runs = [[Protection(name, PROTECTION_TEXT[name]) for name in PROTECTION_TEXT if name in common]]
    merged = []
    for protection in runs[0]:
        same = [next((p for p in run if p.name == protection.name), None) for run in runs]
        if all(same):
            mechanisms = sorted({p.mechanism for p in same})
            merged.append(Protection(protection.name, protection.text, "; ".join(m for m in mechanisms if m)))
    unsafe = any(m.unsafe_no_sandbox for m in manifests) or any(r.unsafe_no_sandbox for r in results)
    return merged, unsafe


def expected_submissions(options, out_dir: Path) -> dict[Key, str]:
    """(student, assignment) -> the fingerprint an up-to-date result carries, from the submissions."""
    jobs = discover([p.resolve() for p in options.submissions], options.assignment, out_dir / "submissions")
    fingerprints = expected_fingerprints(jobs, units_map(options.units_map))
    return {(job.student, job.assignment): fingerprint for job, fingerprint in fingerprints.items()}


def merge_folders(folders: list[Path], expected: dict[Key, str] | None) -> tuple[Merge, list[RunManifest]]:
    merge = Merge()
    manifests = {folder: RunManifest.read(folder) for folder in folders}
    check_shards(manifests, merge)
    found = gather(folders, merge)
    if expected is None:  # what the shards say they took
        listed = [m for m in manifests.values() if m is not None]
        wanted = {pair for m in listed for pair in m.submissions} if listed else set(found)
    else:
        wanted = set(expected)
    for key in sorted(set(found) | wanted):
        if key not in found:
            merge.missing.append(f"{key[0]}/{key[1]}: no result in any folder")
        elif expected is not None and key not in expected:
            merge.extra.append(f"{key[0]}/{key[1]}: not among the submissions; left out")
        else:
            choose(key, found[key], expected.get(key) if expected is not None else None, merge)
    return merge, [m for m in manifests.values() if m is not None]


def write_merged(merge: Merge, manifests: list[RunManifest], out_dir: Path, folders: list[Path]) -> Path:
    """Copy the kept results (and logs) into out_dir and render the gradebook from them."""
    results = []
    for (student, assignment), candidate in sorted(merge.kept.items()):
        target = out_dir / "results" / assignment / f"{student}.json"
        if candidate.path.resolve() != target.resolve():
            write_atomic(target, candidate.path.read_bytes())
        log = candidate.folder / "logs" / assignment / f"{student}.log"
        log_target = out_dir / "logs" / assignment / f"{student}.log"
        if log.exists() and log.resolve() != log_target.resolve():
            write_atomic(log_target, log.read_bytes())
        results.append(candidate.result)
    protections, unsafe = merged_protections(manifests, results)
    gradebook = render_outputs(results, out_dir, protections, unsafe=unsafe, refresh_feedback=True)
    RunManifest(
        collected_from=[str(folder) for folder in folders],
        students=sorted({student for student, _ in merge.kept}),
        submissions=sorted(merge.kept),
        graded=0,
        reused=len(merge.kept),
        failures=merge.conflicts + merge.stale + merge.missing,
        protections=protections,
        unsafe_no_sandbox=unsafe,
        host=socket.gethostname(),
        seconds=round(sum(m.seconds for m in manifests), 1),
        cpu_seconds=round(sum(m.cpu_seconds for m in manifests), 1),
    ).write(out_dir)
    return gradebook


def print_summary(merge: Merge, gradebook: Path, regrade_hint: str):
    print(f"Merged {len(merge.kept)} result(s) into {gradebook.parent} (grades.csv, report.md, feedback/, gradescope/)")
    for title, lines, stream in (
        ("Shards", merge.shards, sys.stderr),
        ("Unreadable results", merge.unreadable, sys.stderr),
        ("Conflicts (left out)", merge.conflicts, sys.stderr),
        ("Stale results (left out)", merge.stale, sys.stderr),
        ("Missing results", merge.missing, sys.stderr),
        ("Conflicts resolved by the current fingerprint", merge.resolved, sys.stdout),
        ("Not among the submissions", merge.extra, sys.stdout),
    ):
        if lines:
            print(f"{title} ({len(lines)}):", file=stream)
            for line in lines:
                print(f"  {line}", file=stream)
    if not merge.clean:
        print(f"The gradebook is incomplete. {regrade_hint}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segkit collect",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("out", type=Path, help="the merged output folder (may be one of the shard folders)")
    parser.add_argument("folders", nargs="+", type=Path, help="output folders of the shard runs")
    parser.add_argument(
        "--submissions",
        type=Path,
        action="append",
        help="the submissions the shards graded (repeatable): reports missing students and stale results",
    )
    parser.add_argument("--assignment", help="as given to the shard runs (loose notebooks)")
    parser.add_argument("--units-map", type=Path, help="as given to the shard runs")
    return parser


def main(argv=None) -> int:
    options = build_parser().parse_args(argv)
    out_dir = options.out.resolve()
    folders = [folder.resolve() for folder in options.folders]
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = expected_submissions(options, out_dir) if options.submissions else None
    merge, manifests = merge_folders(folders, expected)
    gradebook = write_merged(merge, manifests, out_dir, folders)
    where = " ".join(str(p) for p in options.submissions) if options.submissions else "SUBMISSIONS"
    print_summary(merge, gradebook, f"Grade what is missing with: python -m grader {where} --out {out_dir}")
    return 0 if merge.clean else 1


if __name__ == "__main__":
    sys.exit(main())
