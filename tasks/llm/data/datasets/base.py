"""Task: an indexable set of conversations that can grade a model's answer; TaskMixture mixes them.

A conversation is the chat format of `tasks/llm/data/chat_format.py` plus metadata the grader needs
(`task`, and for multiple choice `letters` and `answer`). `eval_type` tells the evaluator how
to score: "generative" (sample a completion, then `evaluate`) or "categorical" (compare the
logits of the answer letters after `<|assistant_start|>`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tasks.common.errors import InputError

Conversation = dict[str, Any]


class TaskDataError(InputError):
    """A task file that is missing, malformed or empty."""


class Task:
    name = "task"
    eval_type = "generative"

    def __len__(self) -> int:
        raise NotImplementedError

    def example(self, index: int) -> Conversation:
        raise NotImplementedError

    def evaluate(self, conversation: Conversation, completion: str) -> bool:
        """Is `completion` (the assistant's text after `<|assistant_start|>`) a correct answer?"""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Conversation:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: example {index} outside 0..{len(self) - 1}")
        conversation = self.example(index % len(self))
        conversation["task"] = self.name
        return conversation


class ListTask(Task):
    """A task backed by a list of rows loaded from files."""

    def __init__(self, rows: Sequence[Any], limit: int | None = None):
        if not rows:
            raise TaskDataError(f"{self.name}: no examples loaded")
        self.rows = list(rows[:limit] if limit else rows)

    def __len__(self) -> int:
        return len(self.rows)


class TaskMixture:
    """Examples of several tasks, interleaved in a fixed shuffled order (as nanochat's mixtures).

    `weights[i]` is how many passes over task i the mixture holds: 2.0 repeats every example
    twice, 0.25 takes a (seeded) quarter of it. The same seed gives the same order everywhere.
    """

    def __init__(self, tasks: Sequence[Task], weights: Sequence[float] | None = None, seed: int = 0):
        weights = list(weights) if weights is not None else [1.0] * len(tasks)
        if not tasks or len(weights) != len(tasks):
            raise ValueError(f"need one weight per task, got {len(tasks)} tasks and {len(weights)} weights")
        if any(w < 0 for w in weights):
            raise ValueError(f"task weights must be >= 0, got {weights}")
        rng = random.Random(seed)
        self.tasks = list(tasks)
        self.index: list[tuple[int, int]] = []
        for t, (task, weight) in enumerate(zip(tasks, weights)):
            whole, frac = divmod(weight, 1.0)
            order = list(range(len(task)))
            rng.shuffle(order)
            picks = order * int(whole) + order[: round(frac * len(task))]
            self.index.extend((t, i) for i in picks)
        if not self.index:
            raise ValueError("the mixture is empty (all weights round to zero examples)")
        rng.shuffle(self.index)
        self.by_name = {task.name: task for task in tasks}

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> Conversation:
        t, i = self.index[index]
        return self.tasks[t][i]

    def evaluate(self, conversation: Conversation, completion: str) -> bool:
        return self.by_name[conversation["task"]].evaluate(conversation, completion)
