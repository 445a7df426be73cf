"""GSM8K: grade-school math word problems; answers end in `#### N`.

Reference solutions carry calculator annotations `<<48/2=24>>`; they become python tool calls
(expression trained on, result given as the tool's output), so the model learns to use the
calculator that the engine executes. Grading compares the number after `####`.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.llm.data.datasets.base import Conversation, ListTask, TaskDataError
from tasks.llm.data.datasets.sources import locate, read_rows, require

ANSWER_RE = re.compile(r"#### (-?[0-9.,]+)")
CALC_RE = re.compile(r"(<<[^>]*>>)")


def extract_answer(text: str) -> str | None:
    """The number after the last `#### `, without thousands separators; None if there is none."""
    found = ANSWER_RE.findall(text)
    if not found:
        return None
    number = found[-1].replace(",", "").rstrip(".")
    return number or None


def answer_parts(answer: str) -> list[dict[str, str]]:
    """Split a reference answer into text / python / python_output parts at `<<expr=result>>`."""
    parts = []
    for piece in CALC_RE.split(answer):
        if piece.startswith("<<") and piece.endswith(">>"):
            expr, _, result = piece[2:-2].rpartition("=")
            if not expr:  # `<<expr>>` without a result
                expr, result = piece[2:-2], ""
            parts.append({"type": "python", "text": expr})
            parts.append({"type": "python_output", "text": result})
        elif piece:
            parts.append({"type": "text", "text": piece})
    return parts


def load_gsm8k(path: str | Path) -> list[dict[str, str]]:
    rows = []
    for where, row in read_rows(path):
        row = require(row, where, {"question": str, "answer": str})
        if extract_answer(row["answer"]) is None:
            raise TaskDataError(f"{where}: answer does not end in '#### <number>'")
        rows.append({"question": row["question"], "answer": row["answer"]})
    if not rows:
        raise TaskDataError(f"{path} holds no GSM8K rows")
    return rows


class GSM8K(ListTask):
    """Grade-school math word problems, answer after `####`, calculator calls as python tool."""

    name = "gsm8k"

    def __init__(self, split: str = "test", path: str | Path | None = None, data_dir: str | None = None,
                 download: bool = False, limit: int | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"GSM8K split must be train or test, got {split!r}")
        path = path or locate("gsm8k_{split}.jsonl", data_dir, download, split=split)
        super().__init__(load_gsm8k(path), limit)

    def example(self, index: int) -> Conversation:
        row = self.rows[index]
        return {"messages": [{"role": "user", "content": row["question"]},
                             {"role": "assistant", "content": answer_parts(row["answer"])}],
                "answer": extract_answer(row["answer"])}

    def evaluate(self, conversation: Conversation, completion: str) -> bool:
        predicted = extract_answer(completion)
        return predicted is not None and _same_number(predicted, conversation["answer"])


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b
