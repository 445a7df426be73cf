"""Every command's `--help` works and lists its options (help texts are plain: `[bracketed]` words stay)."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout


def command_paths() -> list[tuple[list[str], list[str]]]:
    """(words after `seedflow`, the command's option names) for the root, every group and every command."""
    import typer

    from flows.cli import build_app

    found = []

    def walk(command, words: list[str]) -> None:
        options = [opt for param in command.params for opt in getattr(param, "opts", []) if opt.startswith("--")]
        found.append((words, options))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(build_app()), [])
    return found


def seedflow(monkeypatch, *words: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `seedflow WORDS` through its entry point, in this process."""
    from flows.cli import run

    monkeypatch.setattr(sys, "argv", ["seedflow", *words])
    out, err, code = io.StringIO(), io.StringIO(), 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            run()
        except SystemExit as exited:
            code = exited.code or 0
    return code, out.getvalue(), err.getvalue()


def test_every_help_exits_0_and_shows_its_options(monkeypatch):
    paths = command_paths()
    assert {"llm pretrain", "llm curtail", "bench diloco-wan", "cloud optimize", "demo"} <= {" ".join(w) for w, _ in paths}
    for words, options in paths:
        code, out, err = seedflow(monkeypatch, *words, "--help")
        assert code == 0 and err == "", (words, err)
        assert out.startswith("Usage: seedflow") and "--help" in out, words
        assert all(option in out for option in options), (words, [o for o in options if o not in out])


def test_bracketed_words_are_shown_not_parsed(monkeypatch):
    for words, expected in ((["llm", "pretrain"], "name[:workers][@mbit_per_s[/latency_ms]]"),
                            (["llm", "tasks"], "[bracketed] tokens")):
        code, out, _ = seedflow(monkeypatch, *words, "--help")
        assert code == 0 and expected in " ".join(out.split()), out
