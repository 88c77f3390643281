"""`python -m grader.confine`: what this host offers for confinement without namespaces."""

from __future__ import annotations

import sys

from . import available


def main() -> int:
    layer = available()
    print(
        f"Landlock ABI: {layer.landlock_abi or 'none'}"
        + (f" ({layer.landlock_reason})" if layer.landlock_reason else "")
    )
    print(f"Landlock features: {', '.join(layer.features()) or 'none'}")
    print(f"seccomp filters: {'yes' if layer.seccomp else 'no (' + layer.seccomp_reason + ')'}")
    print(f"root in the initial user namespace: {'yes' if layer.root else 'no'}")
    if not layer.usable:
        print("This host cannot confine a worker without namespaces.")
        return 1
    print("A worker confined here gets:")
    for item in layer.protections():
        print(f"  - {item}")
    print("and gives up, against bubblewrap:")
    for item in layer.gives_up():
        print(f"  - {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
