"""Task datasets (conversations) for midtraining, SFT and evaluation, and mixtures of them.

`build_task("gsm8k", split="train")` / `build_mixture({"addition": 1.0, "gsm8k": 0.5}, "train")`
are how configs (params.yaml `llm.midtrain` / `llm.sft` / `llm.eval`) name tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.llm.data.datasets.base import Conversation, Task, TaskDataError, TaskMixture
from tasks.llm.data.datasets.gsm8k import GSM8K
from tasks.llm.data.datasets.humaneval import HumanEval
from tasks.llm.data.datasets.multiple_choice import ARC, MMLU
from tasks.llm.data.datasets.synthetic import Addition, Counting, Reverse, Spelling

TASKS: dict[str, type[Task]] = {
    "gsm8k": GSM8K, "humaneval": HumanEval, "mmlu": MMLU, "arc": ARC,
    "addition": Addition, "spelling": Spelling, "reverse": Reverse, "counting": Counting,
}
SPLITLESS = {"humaneval"}  # HumanEval has only its test problems


def build_task(name: str, split: str = "train", data_dir: str | None = None, **options: Any) -> Task:
    """A task by name; `options` go to its constructor (e.g. size=2000, max_digits=2, limit=100)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    cls = TASKS[name]
    if name not in SPLITLESS:
        options["split"] = split
    if cls in (GSM8K, HumanEval, MMLU, ARC):
        options["data_dir"] = data_dir
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"bad options for task {name!r}: {exc}") from exc


def build_mixture(weights: Mapping[str, float], split: str = "train", data_dir: str | None = None,
                  options: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0) -> TaskMixture:
    """A TaskMixture from {task name: weight}; `options[name]` configures each task."""
    options = options or {}
    unknown = set(options) - set(weights)
    if unknown:
        raise ValueError(f"options given for tasks not in the mixture: {sorted(unknown)}")
    tasks = [build_task(name, split, data_dir, **dict(options.get(name, {}))) for name in weights]
    return TaskMixture(tasks, list(weights.values()), seed=seed)


__all__ = ["ARC", "GSM8K", "MMLU", "TASKS", "Addition", "Conversation", "Counting", "HumanEval", "Reverse",
           "Spelling", "Task", "TaskDataError", "TaskMixture", "build_mixture", "build_task"]
