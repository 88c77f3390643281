"""Sandbox launcher: prepares the worker's view of the machine, drops privileges, execs.

Runs as root inside fresh mount/pid/network namespaces made by `unshare` (see
`grader.sandbox`), with the standard library only. Steps, in order:

1. make every mount private, so nothing below leaks back to the host;
2. keep a handle on each folder the worker must still see (Python, the scratch dir);
3. cover the hidden folders (repository, submissions, grades, home, /tmp, ...) with
   empty tmpfs mounts, then bind the kept folders back in, read-only except scratch;
4. join the cgroups the parent prepared, set resource limits, drop to the worker's
   uid/gid with no supplementary groups, and exec the worker.

The configuration is a JSON file whose path is argv[1]; argv[2:] is the worker command.
Any failure here aborts the launch (exit 97), so the parent never runs student code
with fewer protections than it reports.
"""

import ctypes
import ctypes.util
import json
import os
import resource
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def mount(source, target, fstype, flags, data=None):
    result = _libc.mount(
        source.encode() if source else None, target.encode(),
        fstype.encode() if fstype else None, ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} -> {target}: {os.strerror(errno)}")


def is_under(path, parent):
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def prepare_mounts(config):
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    keep = [(p, False) for p in config["expose_ro"] if os.path.isdir(p)]
    keep.append((config["scratch"], True))
    handles = [(path, writable, os.open(path, os.O_RDONLY | os.O_DIRECTORY)) for path, writable in keep]

    hidden = []
    for path in sorted(set(config["hide"]), key=len):
        if not os.path.isdir(path) or any(is_under(path, h) for h in hidden):
            continue
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=755")
        hidden.append(path)

    for path, writable, fd in handles:
        if not any(is_under(path, h) for h in hidden):
            if not writable:
                mount(path, path, None, MS_BIND | MS_REC)
                mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            continue
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        if not writable:
            mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        os.close(fd)


def join_cgroups(config):
    for procs_file in config.get("cgroup_procs", []):
        with open(procs_file, "w") as handle:
            handle.write(str(os.getpid()))


def set_limits(config):
    limits = config["rlimits"]
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def drop_privileges(config):
    uid, gid = config["uid"], config["gid"]
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("could not drop privileges")


def main():
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    command = sys.argv[2:]
    try:
        if config.get("mounts"):
            prepare_mounts(config)
        join_cgroups(config)
        set_limits(config)
        if config.get("uid") is not None:
            drop_privileges(config)
        os.chdir(config["scratch"])
    except Exception as exc:  # never fall through to running student code
        print(f"segkit launcher: {exc}", file=sys.stderr)
        os._exit(97)
    os.execve(command[0], command, config["env"])


if __name__ == "__main__":
    main()
