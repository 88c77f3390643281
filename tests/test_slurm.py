"""The Slurm recipe end to end, on a real single-node Slurm started by this test (make proof).

Installs Debian's `slurm-wlm` and `munge` when they are missing (root and apt-get needed; skipped
with the reason otherwise, or when SEGKIT_INSTALL_SLURM=0), starts munged, slurmctld and slurmd
as root with a private configuration (own ports, state and munge socket; cgroup plugins off), then:

1. grades the bundled examples on this machine: `python -m grader ... -j 2`;
2. `segkit slurm --shards 4 --submit`: a 4-task job array (one core each) and the collect job
   that depends on it;
3. compares the merged grades.csv, report.md and feedback/gradescope trees with the one-machine
   run byte for byte, and checks that a plain re-run over the merged folder reuses every result.

Timings (seconds per submission, one machine and through Slurm) are printed and written to
build/slurm-proof.json. SEGKIT_SLURM_ASSIGNMENTS=cam,unet grades only those assignments' examples;
SEGKIT_SLURM_J1=1 also times a one-machine run at -j 1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.assignments import REPO_ROOT, assignment_names

pytestmark = [pytest.mark.proof, pytest.mark.slow]

BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")
# The limits of the shared grading run of make test (tests/conftest.py): honest code stays far inside them.
RUN_OPTIONS = ["--cell-timeout", "60", "--probe-timeout-cap", "60", "--memory-mb", "3072"]
SHARDS = 4
RENDERED = ("grades.csv", "report.md", "feedback", "gradescope")


def _missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def ensure_slurm() -> str | None:
    """None when Slurm and munge are usable, else why not (the test is then skipped)."""
    if not _missing_binaries():
        return None if os.geteuid() == 0 else "the test starts slurmd and munged as root; run it as root"
    if os.environ.get("SEGKIT_INSTALL_SLURM") == "0":
        return f"Slurm is not installed ({', '.join(_missing_binaries())} missing) and SEGKIT_INSTALL_SLURM=0"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "Slurm is not installed and cannot be: installing slurm-wlm and munge needs root and apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"]
    output = ""
    for commands in ([install], [["apt-get", "update", "-q"], install]):
        try:
            for command in commands:
                run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
                output = run.stdout[-1500:] + run.stderr[-1500:]
                if run.returncode != 0:
                    break
        except subprocess.TimeoutExpired:
            output = "apt-get timed out"
        if not _missing_binaries():
            return None
    return f"could not install slurm-wlm and munge with apt-get (no package mirror?):\n{output}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


class LocalSlurm:
    """munged, slurmctld and slurmd in the foreground, as this test's own child processes."""

    NODE = "segkit-node"

    def __init__(self, root: Path):
        self.root = root
        self.processes: list[subprocess.Popen] = []
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def write_config(self):
        for folder in ("state", "spool", "log", "munge"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o755)  # munged checks its socket folder's permissions
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(128))
        os.chmod(key, 0o400)
        self.socket = self.root / "munge" / "munge.socket"
        cpus = os.cpu_count() or 1
        lines = {
            "ClusterName": "segkit",
            "SlurmctldHost": "localhost(127.0.0.1)",
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.socket}",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": self.root / "log" / "slurmctld.log",
            "SlurmdLogFile": self.root / "log" / "slurmd.log",
            # No cgroups, no accounting: a single node inside whatever container runs the tests.
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU",
            "MpiDefault": "none",
            "SwitchType": "switch/none",
            "ReturnToService": "2",
            "MinJobAge": "3600",  # keep finished jobs visible to scontrol for the checks
            "NodeName": f"{self.NODE} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} "
            f"RealMemory={int(memory_mb() * 0.9)} State=UNKNOWN",
            "PartitionName": f"grading Nodes={self.NODE} Default=YES MaxTime=INFINITE State=UP",
        }
        self.conf.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))

    def start(self):
        self.write_config()
        log = self.root / "log"
        self._spawn(
            ["munged", "-F", "-f", f"--socket={self.socket}", f"--key-file={self.root / 'munge.key'}"]
            + [f"--log-file={log / 'munged.log'}", f"--pid-file={self.root / 'munged.pid'}"]
            + [f"--seed-file={self.root / 'munged.seed'}"],
            "munged",
        )
        self._wait(lambda: self.socket.exists(), "munged to open its socket", log / "munged.log")
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._spawn(["slurmd", "-D", "-N", self.NODE, "-f", str(self.conf)], "slurmd")
        self._wait(self._node_idle, "the node to register as idle", log / "slurmd.log", timeout=90)

    def _spawn(self, command: list[str], name: str):
        output = open(self.root / "log" / f"{name}.stdout", "w")
        self.processes.append(
            subprocess.Popen(command, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def _node_idle(self) -> bool:
        run = self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False)
        return run.returncode == 0 and run.stdout.strip() == "idle"

    def _wait(self, ready, what: str, log: Path, timeout: float = 30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready():
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.5)
        tails = []
        for path in sorted((self.root / "log").iterdir()):
            tails.append(f"--- {path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        pytest.skip(f"a local Slurm could not be started on this host (waited for {what}):\n" + "\n".join(tails))

    def run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def wait_for_jobs(self, job_ids: list[str], timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            queued = self.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"], check=False)
            if queued.returncode == 0 and not queued.stdout.strip():
                return True
            time.sleep(2)
        return False

    def job_state(self, job_id: str) -> str:
        shown = self.run(["scontrol", "show", "job", job_id], check=False).stdout
        return " ".join(word for word in shown.split() if word.startswith(("JobState=", "ExitCode=")))

    def stop(self):
        self.run(["scancel", "--full", "-u", "root"], check=False)
        time.sleep(1)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture
def local_slurm(tmp_path_factory):
    reason = ensure_slurm()
    if reason:
        pytest.skip(reason)
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.stop()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    files = {}
    for name in RENDERED:
        root = folder / name
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files.update({str(p.relative_to(folder)): p.read_bytes() for p in paths})
    return files


def test_slurm_array_matches_one_machine(local_slurm, tmp_path):
    from segkit.proof.examples import build_examples

    chosen = os.environ.get("SEGKIT_SLURM_ASSIGNMENTS")
    assignments = chosen.split(",") if chosen else assignment_names()
    submitted = build_examples(tmp_path / "submitted", assignments)
    submissions = len(list(submitted.glob("*/*/*.ipynb")))
    env = dict(local_slurm.env, PYTHONPATH=str(REPO_ROOT))
    timings: dict[str, float] = {"submissions": submissions}

    def grade_here(out: Path, jobs: int) -> float:
        command = [sys.executable, "-m", "grader", str(submitted), "--out", str(out), "-j", str(jobs), *RUN_OPTIONS]
        started = time.time()
        run = subprocess.run(
            [*command, "--reference-cache", str(out) + "-reference-cache"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=7200,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return time.time() - started

    if os.environ.get("SEGKIT_SLURM_J1") == "1":
        timings["one_machine_j1_s"] = grade_here(tmp_path / "single-j1", 1)
    timings["one_machine_j2_s"] = grade_here(tmp_path / "single", 2)

    merged = tmp_path / "slurm-grades"
    generate = [sys.executable, "-m", "segkit", "slurm", str(submitted), "--shards", str(SHARDS)]
    generate += ["--out", str(merged), "--cpus-per-task", "1", "--mem-per-cpu", "3G", "--time", "02:00:00"]
    generate += ["--grader-args", " ".join(RUN_OPTIONS), "--reference-cache", str(tmp_path / "slurm-reference-cache")]
    started = time.time()
    run = subprocess.run([*generate, "--submit"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    array, collect = (merged / "slurm" / "jobs").read_text().split()
    finished = local_slurm.wait_for_jobs([array, collect], timeout=7200)
    timings["slurm_4_tasks_s"] = time.time() - started
    logs = sorted((merged / "slurm" / "logs").glob("*.out"))
    log_text = "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-2000:]}" for p in logs)
    assert finished, f"the Slurm jobs did not finish in time\n{log_text}"
    assert "ExitCode=0:0" in local_slurm.job_state(collect), f"{local_slurm.job_state(collect)}\n{log_text}"

    shards = [json.loads((merged / "shards" / str(k) / "run.json").read_text()) for k in range(1, SHARDS + 1)]
    taken = sorted(s for shard in shards for s in shard["students"])
    assert taken == sorted({p.parts[-3] for p in submitted.glob("*/*/*.ipynb")})  # a partition
    single = folder_bytes(tmp_path / "single")
    slurm = folder_bytes(merged)
    assert slurm["grades.csv"] == single["grades.csv"], "the merged grades.csv differs from the one-machine run"
    assert slurm == single  # report.md and every feedback file too

    rerun = subprocess.run(
        [sys.executable, "-m", "grader", str(submitted), "--out", str(merged), "-j", "1", *RUN_OPTIONS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert f"Reusing {submissions} up-to-date result(s); grading 0." in rerun.stdout, rerun.stdout + rerun.stderr

    timings["shard_seconds"] = [shard["seconds"] for shard in shards]
    timings["shard_cpu_seconds"] = [shard["cpu_seconds"] for shard in shards]
    timings["cores"] = os.cpu_count()
    for key in ("one_machine_j1_s", "one_machine_j2_s", "slurm_4_tasks_s"):
        if key in timings:
            timings[f"{key[:-2]}_s_per_submission"] = round(timings[key] / submissions, 2)
    record = REPO_ROOT / "build" / "slurm-proof.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(timings, indent=1) + "\n")
    print(json.dumps(timings, indent=1))


@pytest.mark.parametrize(
    "spelling",
    [["--grader-args", "--unsafe-no-sandbox"], ["--grader-args=--unsafe-no-sandbox"]],
    ids=["space", "equals"],
)
def test_every_grader_args_spelling_reaches_the_job_script(spelling, tmp_path):
    """Does `segkit slurm --grader-args --unsafe-no-sandbox` (the guide's spelling) write job scripts that pass the
    option on, as the `=` spelling does?"""
    from segkit.slurm import main

    assert main([str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--shards", "2", *spelling]) == 0
    script = (tmp_path / "out" / "slurm" / "grade.sbatch").read_text()
    assert "--unsafe-no-sandbox" in script
