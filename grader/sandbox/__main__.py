"""`python -m grader.sandbox`: what this host offers for confinement without namespaces (Landlock,
seccomp), then which sandbox layer it gives a grading run, and what that layer protects."""

from __future__ import annotations

import sys

from . import confine
from .host import ENV_LAYER, host_sandbox
from .protections import BASE_PROTECTIONS, PROTECTION_TEXT


def main() -> int:
    confine.main()
    print()
    host = host_sandbox()
    if not host.ok:
        print(f"No sandbox layer works here: grading refuses (or runs with --unsafe-no-sandbox).\n{host.reason}")
        return 1
    who = "a spare uid (61000 and up)" if host.as_root else "your uid, without capabilities"
    print(f"Layer: {host.layer} (worker as {who}; caps: {host.caps}; set {ENV_LAYER} to force one)")
    provided = {p.name: p for p in host.protections()}
    for name, text in PROTECTION_TEXT.items():
        if name in BASE_PROTECTIONS:
            continue
        line = provided[name].describe() if name in provided else f"NOT active: {text}"
        print(f"  - {name}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
