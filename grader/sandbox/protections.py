"""What each sandbox layer protects, in the words report.md, feedback and Gradescope show.

Every name of PROTECTION_TEXT is active in the bubblewrap layer. The Landlock layer (no user
namespaces) gives some up; report.md lists those as "NOT active" with the text below, which says
what they need. Each active protection carries its mechanism on this host (``Protection.mechanism``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protection:
    name: str
    text: str
    mechanism: str = ""

    def describe(self) -> str:
        return f"{self.text} ({self.mechanism})" if self.mechanism else self.text


# Every protection, in report order. The sandbox ones need a working host_sandbox().
PROTECTION_TEXT = {
    "process": "student code ran in a separate worker process, never in the grading process",
    "timeouts": "wall-clock time limits per cell, per check and per submission",
    "rlimits": "CPU-time, address-space, file-size and open-file limits",
    "output_cap": "printed output capped",
    "filesystem_allowlist": "allow-list filesystem: only the Python runtime, system libraries, the starter "
    "package and a size-capped scratch folder can be read; no solutions, grader, submissions, "
    "grades, home folders or other copies of the kit",
    "no_network": "no network: no connection can leave the worker",
    "network_namespace": "a network namespace of its own (user namespaces): not even the host's loopback "
    "services are there",
    "pid_namespace": "its own process tree and /proc (user namespaces): no other process of the machine can be seen",
    "no_signals_out": "no process outside the worker can be signalled or traced",
    "no_new_privileges": "no new privileges, every capability dropped, no nested user namespaces",
    "unprivileged_user": "an unprivileged user outside the sandbox",
    "memory_cap": "memory cap over all of the worker's processes",
    "process_cap": "process/thread count cap",
}
BASE_PROTECTIONS = ("process", "timeouts", "rlimits", "output_cap")
SANDBOX_PROTECTIONS = tuple(name for name in PROTECTION_TEXT if name not in BASE_PROTECTIONS)
# What the Landlock layer cannot give without namespaces (report.md lists them as NOT active).
NAMESPACE_ONLY = ("network_namespace", "pid_namespace")

MEMORY_MECHANISM = {
    "cgroup-v1": "cgroup v1 memory controller",
    "cgroup-v2": "cgroup v2 memory.max",
    "systemd": "systemd user scope MemoryMax",
    "watchdog": "the grader polls the worker's total resident memory and the bytes in its scratch every "
    "{interval_ms} ms and kills it over the cap; per-process address-space limit",
}
PROCESS_MECHANISM = {
    "cgroup-v1": "cgroup v1 pids controller",
    "cgroup-v2": "cgroup v2 pids.max",
    "systemd": "systemd user scope TasksMax",
    "watchdog": "",
}


def bubblewrap_mechanisms(caps: str, as_root: bool, interval_ms: int) -> dict[str, str]:
    user = (
        "a spare uid of its own (61000 and up), uid 1000 inside"
        if as_root
        else "the grader's own uid without any capability, uid 1000 inside"
    )
    processes = PROCESS_MECHANISM[caps]
    processes += (" and " if processes else "") + "RLIMIT_NPROC counted in the worker's own user namespace"
    return {
        "filesystem_allowlist": "bubblewrap mount namespace",
        "no_network": "bubblewrap --unshare-net: only its own loopback",
        "network_namespace": "bubblewrap --unshare-net",
        "pid_namespace": "bubblewrap --unshare-pid",
        "no_signals_out": "bubblewrap --unshare-pid",
        "no_new_privileges": "PR_SET_NO_NEW_PRIVS, --cap-drop ALL, --disable-userns",
        "unprivileged_user": user,
        "memory_cap": MEMORY_MECHANISM[caps].format(interval_ms=interval_ms),
        "process_cap": processes,
    }


def landlock_mechanisms(caps: str, spare_uid: bool, abi: int, interval_ms: int) -> dict[str, str]:
    signals = "Landlock signal scope" if abi >= 6 else "seccomp: signals only to its own process group"
    network = "seccomp: only unix sockets, no connect()" + (
        "; Landlock denies TCP bind and connect" if abi >= 4 else ""
    )
    if spare_uid:
        user = "a spare uid of its own (61000 and up); solutions/, assignments/ and the grading folders closed to it (file modes)"
        processes = PROCESS_MECHANISM[caps] or "RLIMIT_NPROC of its spare uid"
        if PROCESS_MECHANISM[caps]:
            processes += " and RLIMIT_NPROC of its spare uid"
    else:
        user = "the grader's own uid without any capability (Landlock, not file modes, keeps it out)"
        # RLIMIT_NPROC would count every process of the grading user: a cgroup or the watchdog counts.
        processes = PROCESS_MECHANISM[caps] or (
            f"the grader counts the worker's processes (not threads) every {interval_ms} ms and kills it over the cap"
        )
    return {
        "filesystem_allowlist": f"Landlock ABI {abi} on the host's own files",
        "no_network": network,
        "no_signals_out": f"{signals}; Landlock forbids ptrace outside the worker",
        "no_new_privileges": "PR_SET_NO_NEW_PRIVS, no capabilities, seccomp refuses namespaces, mounts, ptrace, "
        "bpf, perf, keyrings, io_uring",
        "unprivileged_user": user,
        "memory_cap": MEMORY_MECHANISM[caps].format(interval_ms=interval_ms),
        "process_cap": processes,
    }


def sandbox_protections(mechanisms: dict[str, str]) -> list[Protection]:
    """The sandbox protections a layer provides (those it has a mechanism for), in report order."""
    return [
        Protection(name, PROTECTION_TEXT[name], mechanisms[name]) for name in SANDBOX_PROTECTIONS if name in mechanisms
    ]


def base_protections() -> list[Protection]:
    return [Protection(name, PROTECTION_TEXT[name]) for name in BASE_PROTECTIONS]
