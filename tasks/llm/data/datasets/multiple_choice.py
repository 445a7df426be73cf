"""Multiple-choice tasks (MMLU, ARC), rendered and graded by answer letter as nanochat does.

The user turn lists the choices as `- text=A`; the assistant answers with the letter alone, so
an evaluator can score the logits of the letter tokens right after `<|assistant_start|>`.

Formats read:
- MMLU, Hugging Face `cais/mmlu` (.parquet/.jsonl/.json): question, subject, choices[4], answer
  (index); or the original headerless CSVs `<subject>_test.csv`: question, A, B, C, D, letter.
- ARC, Hugging Face `allenai/ai2_arc`: id, question, choices {text: [...], label: [...]},
  answerKey; or the original AI2 JSONL: question {stem, choices [{text, label}]}, answerKey.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tasks.llm.data.datasets.base import Conversation, ListTask, TaskDataError
from tasks.llm.data.datasets.sources import locate, read_rows, require

LETTERS = "ABCDEFGHIJ"


def render_mc(question: str, letters: list[str], choices: list[str]) -> str:
    lines = [f"Multiple Choice question: {question}"] + [f"- {c}={letter}" for letter, c in zip(letters, choices)]
    return "\n".join(lines) + "\n\nRespond only with the letter of the correct answer."


class MultipleChoice(ListTask):
    """Rows are {question, choices, letters, answer (a letter), subject}."""

    eval_type = "categorical"

    def example(self, index: int) -> Conversation:
        row = self.rows[index]
        return {"messages": [{"role": "user", "content": render_mc(row["question"], row["letters"], row["choices"])},
                             {"role": "assistant", "content": row["answer"]}],
                "letters": row["letters"], "answer": row["answer"], "subject": row["subject"]}

    def evaluate(self, conversation: Conversation, completion: str) -> bool:
        return completion.strip() == conversation["answer"]


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.lower().endswith(suffixes))
        if not files:
            raise TaskDataError(f"{path} holds no {'/'.join(suffixes)} files")
        return files
    if not path.is_file():
        raise TaskDataError(f"task file {path} not found")
    return [path]


def _mmlu_row(where: str, question: str, choices: list[Any], answer: int, subject: str) -> dict[str, Any]:
    if len(choices) != 4 or not all(isinstance(c, str) for c in choices):
        raise TaskDataError(f"{where}: MMLU needs 4 text choices, got {choices!r}")
    if not (isinstance(answer, int) and 0 <= answer < 4):
        raise TaskDataError(f"{where}: answer must be an index 0..3, got {answer!r}")
    return {"question": question, "choices": list(choices), "letters": list(LETTERS[:4]),
            "answer": LETTERS[answer], "subject": subject}


def load_mmlu(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for file in _files(Path(path), (".csv", ".parquet", ".jsonl", ".json")):
        if file.suffix.lower() == ".csv":
            subject = file.stem.rsplit("_", 1)[0] if file.stem.endswith(("_test", "_dev", "_val")) else file.stem
            with open(file, newline="", encoding="utf-8") as fh:
                for lineno, rec in enumerate(csv.reader(fh), 1):
                    where = f"{file}:{lineno}"
                    if len(rec) != 6 or rec[5].strip() not in LETTERS[:4]:
                        raise TaskDataError(f"{where}: expected question,A,B,C,D,<letter A-D>, got {rec!r}")
                    rows.append(_mmlu_row(where, rec[0], rec[1:5], LETTERS.index(rec[5].strip()), subject))
            continue
        for where, row in read_rows(file):
            row = require(row, where, {"question": str, "choices": list, "answer": int})
            rows.append(_mmlu_row(where, row["question"], row["choices"], row["answer"], str(row.get("subject", ""))))
    if not rows:
        raise TaskDataError(f"{path} holds no MMLU questions")
    return rows


def load_arc(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for file in _files(Path(path), (".parquet", ".jsonl", ".json")):
        for where, row in read_rows(file):
            row = require(row, where, {"question": (str, dict), "answerKey": str})
            if isinstance(row["question"], dict):  # original AI2 layout
                q = require(row["question"], where, {"stem": str, "choices": list})
                question = q["stem"]
                texts = [require(c, where, {"text": str, "label": str})["text"] for c in q["choices"]]
                labels = [c["label"] for c in q["choices"]]
            else:
                choices = require(row, where, {"choices": dict})["choices"]
                choices = require(choices, f"{where} choices", {"text": list, "label": list})
                question, texts, labels = row["question"], choices["text"], choices["label"]
            if len(texts) != len(labels) or len(texts) < 2:
                raise TaskDataError(f"{where}: need >= 2 choices with one label each")
            if row["answerKey"] not in labels:
                raise TaskDataError(f"{where}: answerKey {row['answerKey']!r} is not one of the labels {labels}")
            rows.append({"question": question, "choices": texts, "letters": [str(x) for x in labels],
                         "answer": row["answerKey"], "subject": str(row.get("id", ""))})
    if not rows:
        raise TaskDataError(f"{path} holds no ARC questions")
    return rows


class MMLU(MultipleChoice):
    """57-subject multiple choice (4 options), scored by answer-letter logits."""

    name = "mmlu"

    def __init__(self, split: str = "test", path: str | Path | None = None, data_dir: str | None = None,
                 download: bool = False, limit: int | None = None):
        path = path or locate("mmlu_{split}.parquet", data_dir, download, split=split)
        super().__init__(load_mmlu(path), limit)


class ARC(MultipleChoice):
    """Grade-school science multiple choice (AI2 ARC Easy / Challenge), scored by letter logits."""

    name = "arc"

    def __init__(self, split: str = "test", subset: str = "Easy", path: str | Path | None = None,
                 data_dir: str | None = None, download: bool = False, limit: int | None = None):
        if subset not in ("Easy", "Challenge"):
            raise ValueError(f"ARC subset must be Easy or Challenge, got {subset!r}")
        path = path or locate("arc_{subset}_{split}.parquet", data_dir, download, subset=subset, split=split)
        super().__init__(load_arc(path), limit)
