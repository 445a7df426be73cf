"""HumanEval: write a Python function from its signature and docstring; graded by its tests.

The reference conversation answers with prompt + canonical solution (as nanochat). A completion
is graded by running prompt + extracted code + the problem's tests in the sandbox
(`tasks/llm/eval/sandbox.py`): pass@1 of one sample.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.llm.data.datasets.base import Conversation, ListTask, TaskDataError
from tasks.llm.data.datasets.sources import locate, read_rows, require

FIELDS = {"task_id": str, "prompt": str, "entry_point": str, "canonical_solution": str, "test": str}
CODE_BLOCK_RE = re.compile(r"```(?:python|py)?\n(.*?)(?:```|$)", re.DOTALL)


def extract_program(completion: str) -> str:
    """The code of a ```python block when there is one, else the completion itself."""
    match = CODE_BLOCK_RE.search(completion)
    return match.group(1) if match else completion


def load_humaneval(path: str | Path) -> list[dict[str, str]]:
    rows = []
    for where, row in read_rows(path):
        row = require(row, where, FIELDS)
        if f"def {row['entry_point']}" not in row["prompt"]:
            raise TaskDataError(f"{where}: prompt does not define entry point {row['entry_point']!r}")
        rows.append({k: row[k] for k in FIELDS})
    if not rows:
        raise TaskDataError(f"{path} holds no HumanEval problems")
    return rows


class HumanEval(ListTask):
    """Python functions from docstrings, pass@1 by running the tests in the sandbox."""

    name = "humaneval"

    def __init__(self, path: str | Path | None = None, data_dir: str | None = None, download: bool = False,
                 limit: int | None = None, timeout_s: float = 5.0):
        path = path or locate("HumanEval.jsonl.gz", data_dir, download)
        super().__init__(load_humaneval(path), limit)
        self.timeout_s = timeout_s

    def example(self, index: int) -> Conversation:
        row = self.rows[index]
        return {"messages": [{"role": "user", "content": row["prompt"]},
                             {"role": "assistant", "content": row["prompt"] + row["canonical_solution"]}],
                "task_id": row["task_id"], "entry_point": row["entry_point"], "test": row["test"],
                "prompt": row["prompt"]}

    def evaluate(self, conversation: Conversation, completion: str) -> bool:
        from tasks.llm.eval.sandbox import check_humaneval

        problem = {k: conversation[k] for k in ("prompt", "test", "entry_point")}
        return check_humaneval(problem, "\n" + extract_program(completion), timeout_s=self.timeout_s).passed
