"""The sandbox around student code: a package with one file per mechanism.

- ``host.py``: what the host offers and which layer grades (bubblewrap with user namespaces, else
  Landlock + seccomp; else a refusal with the commands that would enable one);
- ``plan.py``: the pure plan of a worker's view (typed mount operations), its environment,
  command line and kit files; ``bubblewrap.py`` renders it to bwrap's command line and executes
  it; ``landlock_layer.py`` turns it into a ``confine.Plan`` (``confine.py``, ``landlock.py``,
  ``seccomp.py``, ``launch.py``: applied by the confined process itself);
- ``caps.py``: cgroup v1, cgroup v2, a systemd user scope or a watchdog, behind one interface
  (``proctree.py``: what the watchdog reads of /proc); ``uids.py``: spare uids as root;
- ``template.py``: a slot's pre-imported worker template; ``client.py``: ``Worker``;
- ``protocol.py``: the frames both sides speak (the worker loads it by path: it sees no grader/);
- ``protections.py``: what each layer protects, in report.md's words; ``errors.py``, ``limits.py``.

This module only re-exports; importing it does not import torch (collect and the similarity
report import PROTECTION_TEXT from here).
"""

from __future__ import annotations

from .bubblewrap import SandboxPlan
from .caps import CGROUP_ROOT, WATCHDOG_INTERVAL_S
from .client import MAX_ERROR_CHARS, MAX_REPLY_BYTES, Worker
from .errors import ProbeFailed, SandboxUnavailable, WorkerError, WorkerOutOfMemory, WorkerTimeout
from .host import ENV_BWRAP, ENV_LAYER, HostSandbox, active_protections, host_sandbox, require_sandbox
from .limits import Limits
from .plan import REPO_ROOT, STUDENT_PACKAGES, WORKER_SCRIPT
from .proctree import tree_cpu_seconds, tree_memory_bytes, tree_resident_bytes
from .protections import BASE_PROTECTIONS, PROTECTION_TEXT, SANDBOX_PROTECTIONS, Protection
from .template import ENV_TEMPLATE, WorkerTemplate, stop_worker_templates, worker_template

__all__ = [
    "BASE_PROTECTIONS",
    "CGROUP_ROOT",
    "ENV_BWRAP",
    "ENV_LAYER",
    "ENV_TEMPLATE",
    "MAX_ERROR_CHARS",
    "MAX_REPLY_BYTES",
    "PROTECTION_TEXT",
    "REPO_ROOT",
    "SANDBOX_PROTECTIONS",
    "STUDENT_PACKAGES",
    "WATCHDOG_INTERVAL_S",
    "WORKER_SCRIPT",
    "HostSandbox",
    "Limits",
    "ProbeFailed",
    "Protection",
    "SandboxPlan",
    "SandboxUnavailable",
    "Worker",
    "WorkerError",
    "WorkerOutOfMemory",
    "WorkerTemplate",
    "WorkerTimeout",
    "active_protections",
    "host_sandbox",
    "require_sandbox",
    "stop_worker_templates",
    "tree_cpu_seconds",
    "tree_memory_bytes",
    "tree_resident_bytes",
    "worker_template",
]
