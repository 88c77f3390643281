"""One name for "start a process in this host's sandbox layer": a SandboxPlan (bubblewrap) or a
LandlockLaunch, which share command(), env, cwd, kit, caps and cleanup()."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bubblewrap import SandboxPlan
from .landlock_layer import LandlockLaunch
from .limits import Limits

if TYPE_CHECKING:
    from .host import HostSandbox

Launch = SandboxPlan | LandlockLaunch


def launch_for(
    host: HostSandbox, limits: Limits, *, slot: int = 0, forbidden: tuple[str, ...] = (), template: bool = False
) -> Launch:

    if host.layer == "landlock":
        return LandlockLaunch(host, limits, slot=slot, forbidden=forbidden, template=template)
    return SandboxPlan(host, limits, slot=slot, forbidden=forbidden, keep_caps=template)
