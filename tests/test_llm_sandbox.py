"""The HumanEval sandbox contains hostile code and still passes correct solutions."""

from __future__ import annotations

import gzip
import json
import socket

import pytest

from tasks.llm.eval.sandbox import check_humaneval, run_untrusted

PROBLEM = {
    "task_id": "Toy/0",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
    "entry_point": "add",
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
}


def test_correct_solution_passes_and_wrong_one_fails():
    assert check_humaneval(PROBLEM, PROBLEM["canonical_solution"]).passed
    wrong = check_humaneval(PROBLEM, "    return a - b\n")
    assert wrong.status == "failed" and "AssertionError" in wrong.stderr
    assert check_humaneval(PROBLEM, "    return a +\n").status == "failed"  # syntax error


def test_exiting_early_is_not_a_pass():
    assert run_untrusted("import os\nos._exit(0)\n").status == "failed"
    assert run_untrusted("import sys\nsys.exit(0)\n").status == "failed"
    assert check_humaneval(PROBLEM, "    return 0\nimport posix\nposix._exit(0)\n").status == "failed"


def test_real_humaneval_canonical_solutions_pass(shared_data):
    with gzip.open(shared_data / "eval" / "HumanEval.jsonl.gz", "rt") as f:
        problems = [json.loads(line) for line in f][:3]
    for problem in problems:
        result = check_humaneval(problem, problem["canonical_solution"])
        assert result.passed, (problem["task_id"], result.stderr)


def test_infinite_loop_and_sleep_are_stopped():
    """Both ran (they printed) and were stopped as timeouts: the CPU limit ends the loop, the wall-clock
    limit the sleep (a sandbox that did not stop them would hang this test until pytest's timeout)."""
    spin = run_untrusted("print('started', flush=True)\nwhile True:\n    pass\n", timeout_s=1)
    assert spin.status == "timeout" and spin.stdout.startswith("started") and not spin.passed
    sleep = run_untrusted("import time\nprint('started', flush=True)\ntime.sleep(60)\n", timeout_s=1)
    assert sleep.status == "timeout" and sleep.stdout.startswith("started") and not sleep.passed


def test_memory_bomb_is_refused():
    result = run_untrusted("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n", memory_mb=256)
    assert result.status == "failed" and "MemoryError" in result.stderr
    assert run_untrusted("x = bytearray(10**11)\n").status == "failed"


def test_fork_bomb_is_refused():
    guarded = run_untrusted("import os\nwhile True:\n    os.fork()\n")
    assert guarded.status == "failed"
    # posix.fork bypasses the Python guard; the kernel process limit still refuses it
    raw = run_untrusted("import posix\nwhile True:\n    posix.fork()\n")
    assert raw.status == "failed" and ("BlockingIOError" in raw.stderr or "TypeError" in raw.stderr)
    threads = run_untrusted("import threading\nthreading.Thread(target=print).start()\n")
    assert threads.status == "failed"


def test_files_outside_the_sandbox_survive(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inner.txt").write_text("precious")
    attacks = [
        f"import os\nos.remove({str(victim)!r})\n",
        f"import shutil\nshutil.rmtree({str(folder)!r})\n",
        f"open({str(victim)!r}, 'w').write('overwritten')\n",
        f"import posix\nposix.unlink({str(victim)!r})\n",  # bypasses the Python guard
        f"import ctypes\nassert ctypes.CDLL(None).unlink({str(victim).encode()!r}) == 0\n",
    ]
    for attack in attacks:
        result = run_untrusted(attack)
        assert result.status == "failed", attack
        assert victim.read_text() == "precious" and (folder / "inner.txt").is_file(), attack
    # writing inside its own working directory is allowed
    assert run_untrusted("open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n").passed


def test_no_network_even_around_the_guard():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        for attack in (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'x')\n",
            f"import _socket\ns = _socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', {port}))\n",
        ):
            result = run_untrusted(attack)
            assert result.status == "failed", attack
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody ever connected
    finally:
        server.close()
    assert result.isolation["network"] in {"netns", "userns+netns", "socket-guard"}


def test_environment_is_cleared(monkeypatch):
    monkeypatch.setenv("SEEDFLOW_SECRET", "s3cret")
    result = run_untrusted("import os\nprint(sorted(os.environ))\n")
    assert result.passed and "SEEDFLOW_SECRET" not in result.stdout


def test_bad_limits_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        run_untrusted("print(1)", timeout_s=0)
    with pytest.raises(ValueError, match="lacks"):
        check_humaneval({"prompt": "x"}, "")
