"""Task loaders (real GSM8K / HumanEval files, MMLU / ARC fixtures in their public formats),
answer extraction, synthetic tasks and mixtures."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.llm.data.datasets import (ARC, GSM8K, MMLU, Addition, Counting, HumanEval, Reverse, Spelling, TaskDataError,
                             TaskMixture, build_mixture, build_task)
from tasks.llm.data.datasets import sources
from tasks.llm.data.datasets.gsm8k import answer_parts, extract_answer
from tasks.llm.data.datasets.humaneval import extract_program
from tasks.llm.data.datasets.multiple_choice import load_arc, load_mmlu

# ---------------------------------------------------------------- GSM8K


def test_gsm8k_real_file_and_calculator_parts(shared_data):
    test = GSM8K("test", data_dir=str(shared_data))
    assert len(test) == 1319 and len(GSM8K("train", data_dir=str(shared_data), limit=50)) == 50
    conv = test[0]
    assert conv["answer"] == "18" and conv["task"] == "gsm8k"
    parts = conv["messages"][1]["content"]
    assert {"type": "python", "text": "16-3-4"} in parts and {"type": "python_output", "text": "9"} in parts
    assert "".join(p["text"] for p in parts if p["type"] == "text").endswith("#### 18")
    assert test.evaluate(conv, "She makes 9 * 2 = 18.\n#### 18")
    assert not test.evaluate(conv, "#### 19") and not test.evaluate(conv, "18")


def test_answer_extraction():
    assert extract_answer("so\n#### 1,234") == "1234"
    assert extract_answer("#### -7") == "-7"
    assert extract_answer("#### 3.50.") == "3.50"
    assert extract_answer("#### 5 then #### 6") == "6"
    assert extract_answer("the answer is 5") is None
    assert answer_parts("a <<2*3=6>>6 b <<oops>>") == [
        {"type": "text", "text": "a "}, {"type": "python", "text": "2*3"}, {"type": "python_output", "text": "6"},
        {"type": "text", "text": "6 b "}, {"type": "python", "text": "oops"}, {"type": "python_output", "text": ""}]


@pytest.mark.parametrize("content, message", [
    ('{"question": "q", "answer": "no marker"}\n', "does not end in '#### <number>'"),
    ('{"question": "q"}\n', "missing field 'answer'"),
    ('{"question": "q", "answer": "#### 1"}\n{"question": \n', r"g.jsonl:2 is not valid JSON"),
    ('{"question": 3, "answer": "#### 1"}\n', "field 'question' is int"),
    ("\n", "holds no GSM8K rows"),
])
def test_gsm8k_bad_files(tmp_path, content, message):
    (tmp_path / "g.jsonl").write_text(content)
    with pytest.raises(TaskDataError, match=message):
        GSM8K("test", path=tmp_path / "g.jsonl")


def test_missing_file_and_offline_download_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("SEEDFLOW_ROOT", str(tmp_path))
    empty = tmp_path / "data"
    (empty / "eval").mkdir(parents=True)
    with pytest.raises(TaskDataError, match="gsm8k_test.jsonl not found in .*allow download"):
        GSM8K("test", data_dir=str(empty))
    monkeypatch.setitem(sources.URLS, "gsm8k_{split}.jsonl", "http://127.0.0.1:9/{split}.jsonl")
    with pytest.raises(TaskDataError, match="cannot download"):
        GSM8K("test", data_dir=str(empty), download=True)
    assert not (tmp_path / ".cache" / "llm-tasks" / "gsm8k_test.jsonl").exists()

# ---------------------------------------------------------------- HumanEval


def test_humaneval_real_file_graded_in_sandbox(shared_data):
    task = HumanEval(data_dir=str(shared_data))
    assert len(task) == 164
    conv = task[2]
    reference = conv["messages"][1]["content"]
    assert reference.startswith(conv["prompt"])
    assert task.evaluate(conv, reference)  # prompt + canonical solution passes
    assert task.evaluate(conv, f"```python\n{reference}```\nDone.")  # code block extracted
    assert not task.evaluate(conv, "    return None\n")
    assert extract_program("x\n```py\nprint(1)\n```") == "print(1)\n"


def test_humaneval_bad_files(tmp_path, shared_data):
    rows = [json.loads(line) for line in gzip.open(shared_data / "eval" / "HumanEval.jsonl.gz", "rt")][:2]
    del rows[1]["test"]
    path = tmp_path / "he.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(TaskDataError, match="he.jsonl:2: missing field 'test'"):
        HumanEval(path=path)
    (tmp_path / "cut.jsonl.gz").write_bytes(b"plain text, not gzip")
    with pytest.raises(TaskDataError, match="cannot read"):
        HumanEval(path=tmp_path / "cut.jsonl.gz")

# ---------------------------------------------------------------- MMLU and ARC (fixtures in public formats)


MMLU_ROWS = [
    {"question": "What is 2 + 2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "22"], "answer": 1},
    {"question": "H2O is", "subject": "chemistry", "choices": ["salt", "gold", "water", "air"], "answer": 2},
]


def test_mmlu_hf_parquet_jsonl_and_original_csv(tmp_path):
    pq.write_table(pa.Table.from_pylist(MMLU_ROWS), tmp_path / "mmlu_test.parquet")
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in MMLU_ROWS))
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "astronomy_test.csv").write_text('"Which is a planet?",Sun,Mars,Moon,Vega,B\n')
    for rows in (load_mmlu(tmp_path / "mmlu_test.parquet"), load_mmlu(tmp_path / "m.jsonl")):
        assert [r["answer"] for r in rows] == ["B", "C"] and rows[0]["choices"] == ["3", "4", "5", "22"]
    task = MMLU(path=folder)
    conv = task[0]
    assert conv["subject"] == "astronomy" and conv["answer"] == "B" and conv["letters"] == list("ABCD")
    assert task.eval_type == "categorical"
    assert conv["messages"][0]["content"] == ("Multiple Choice question: Which is a planet?\n- Sun=A\n- Mars=B\n"
                                              "- Moon=C\n- Vega=D\n\nRespond only with the letter of the correct answer.")
    assert conv["messages"][1]["content"] == "B"
    assert task.evaluate(conv, " B") and not task.evaluate(conv, "A")
    assert len(MMLU(path=tmp_path / "mmlu_test.parquet", limit=1)) == 1


@pytest.mark.parametrize("row, message", [
    ({**MMLU_ROWS[0], "choices": ["a", "b", "c"]}, "4 text choices"),
    ({**MMLU_ROWS[0], "answer": 4}, "index 0..3"),
    ({k: v for k, v in MMLU_ROWS[0].items() if k != "choices"}, "missing field 'choices'"),
])
def test_mmlu_bad_rows(tmp_path, row, message):
    (tmp_path / "bad.jsonl").write_text(json.dumps(row))
    with pytest.raises(TaskDataError, match=message):
        MMLU(path=tmp_path / "bad.jsonl")


def test_mmlu_bad_csv_and_empty_folder(tmp_path):
    (tmp_path / "x_test.csv").write_text("q,a,b,c,d,E\n")
    with pytest.raises(TaskDataError, match=r"x_test.csv:1: expected question,A,B,C,D"):
        MMLU(path=tmp_path / "x_test.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskDataError, match="holds no"):
        MMLU(path=tmp_path / "empty")


ARC_HF = [{"id": "Mercury_1", "question": "Which is hot?", "choices": {"text": ["ice", "fire", "snow"],
                                                                      "label": ["A", "B", "C"]}, "answerKey": "B"},
          {"id": "NYSED_2", "question": "Pick one", "choices": {"text": ["x", "y", "z", "w"],
                                                                "label": ["1", "2", "3", "4"]}, "answerKey": "4"}]
ARC_AI2 = {"id": "Q3", "question": {"stem": "Plants need?", "choices": [{"text": "light", "label": "A"},
                                                                         {"text": "rocks", "label": "B"}]},
           "answerKey": "A"}


def test_arc_hf_parquet_and_original_jsonl(tmp_path):
    pq.write_table(pa.Table.from_pylist(ARC_HF), tmp_path / "arc.parquet")
    (tmp_path / "arc.jsonl").write_text(json.dumps(ARC_AI2) + "\n")
    hf = ARC(path=tmp_path / "arc.parquet")
    assert [c["answer"] for c in hf] == ["B", "4"]
    assert hf[1]["letters"] == ["1", "2", "3", "4"] and "- w=4" in hf[1]["messages"][0]["content"]
    ai2 = load_arc(tmp_path / "arc.jsonl")
    assert ai2[0]["choices"] == ["light", "rocks"] and ai2[0]["answer"] == "A"
    assert hf.evaluate(hf[0], "B") and not hf.evaluate(hf[0], "C")


def test_arc_bad_answer_key(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({**ARC_AI2, "answerKey": "E"}))
    with pytest.raises(TaskDataError, match=r"answerKey 'E' is not one of the labels \['A', 'B'\]"):
        ARC(path=tmp_path / "bad.jsonl")

# ---------------------------------------------------------------- synthetic tasks and mixtures


def test_synthetic_tasks_are_deterministic_correct_and_graded():
    add = Addition("train", 200, min_digits=2, max_digits=3)
    assert add[5] == Addition("train", 200, min_digits=2, max_digits=3)[5]
    assert add[5] != Addition("test", 200, min_digits=2, max_digits=3)[5]
    for conv in add:
        a, b = map(int, conv["messages"][0]["content"][len("What is "):-1].split(" + "))
        assert 10 <= a <= 999 and conv["answer"] == str(a + b)
        assert add.evaluate(conv, conv["answer"]) and not add.evaluate(conv, str(a + b + 1))
    tool = Addition("train", 5, tool=True)[0]["messages"][1]["content"]
    assert [p["type"] for p in tool] == ["python", "python_output", "text"] and eval(tool[0]["text"]) == int(tool[1]["text"])
    for cls in (Spelling, Reverse):
        task = cls("test", 30)
        for conv in task:
            word = conv["messages"][0]["content"].split(": ")[1]
            assert task.evaluate(conv, conv["answer"]) and not task.evaluate(conv, word + "x")
    counting = Counting("train", 100)
    for conv in counting:
        q = conv["messages"][0]["content"].split()
        letter, word = q[6], q[-1].rstrip("?")
        assert conv["answer"].endswith(f"-> {word.count(letter)}")
        assert counting.evaluate(conv, f"... {word.count(letter)}") and not counting.evaluate(conv, "-> 99")
    few = Spelling("train", 200, words=5)
    assert {c["messages"][0]["content"].split(": ")[1] for c in few} == {"apple", "house", "river", "green", "water"}
    with pytest.raises(ValueError, match="split"):
        Spelling("dev")
    with pytest.raises(ValueError, match="words must be"):
        Counting("train", words=10_000)


def test_mixture_weights_order_and_grading():
    a, s = Addition("train", 40), Spelling("train", 20)
    mix = TaskMixture([a, s], [2.0, 0.5], seed=3)
    counts = Counter(conv["task"] for conv in mix)
    assert counts == {"addition": 80, "spelling": 10}
    assert [mix[i] for i in range(10)] == [TaskMixture([a, s], [2.0, 0.5], seed=3)[i] for i in range(10)]
    assert [mix[i]["task"] for i in range(90)] != sorted(mix[i]["task"] for i in range(90))  # interleaved
    conv = next(c for c in mix if c["task"] == "spelling")
    assert mix.evaluate(conv, conv["answer"]) and not mix.evaluate(conv, "z")
    with pytest.raises(ValueError, match="one weight per task"):
        TaskMixture([a], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        TaskMixture([a], [0.0])


def test_build_task_and_mixture_by_name(shared_data):
    mix = build_mixture({"addition": 1.0, "gsm8k": 0.01}, "train", str(shared_data),
                        {"addition": {"size": 50, "max_digits": 2}})
    assert Counter(c["task"] for c in mix) == {"addition": 50, "gsm8k": 75}
    assert len(build_task("humaneval", "test", str(shared_data), limit=3)) == 3
    with pytest.raises(ValueError, match="unknown task 'squad'"):
        build_task("squad")
    with pytest.raises(ValueError, match="bad options for task 'addition'"):
        build_task("addition", size=5, digits=2)
    with pytest.raises(ValueError, match="not in the mixture"):
        build_mixture({"addition": 1.0}, options={"spelling": {"size": 3}})


def test_seedflow_llm_tasks_renders_with_the_pipelines_tokenizer(tmp_path, monkeypatch, shared_data, capsys):
    """The README's `seedflow llm tasks gsm8k --split test --n 2`, no --tokenizer: params.yaml's tokenizer renders it."""
    import shutil
    import sys
    from pathlib import Path

    import yaml

    from flows.cli import run
    from tasks.llm.data.tokenizer import Tokenizer

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    out_dir = yaml.safe_load((root / "params.yaml").read_text())["llm"]["tokenizer"]["out_dir"]
    (tmp_path / out_dir).mkdir(parents=True)
    Tokenizer.train(["Janet's ducks lay 16 eggs per day. She makes 9 * 2 = 18 dollars."], vocab_size=300).save(
        tmp_path / out_dir / "tokenizer.json")
    monkeypatch.setenv("SEEDFLOW_ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["seedflow", "llm", "tasks", "gsm8k", "--split", "test", "--n", "2",
                                      "--data-dir", str(shared_data)])
    run()  # returns: exit 0
    out = capsys.readouterr().out
    assert out.startswith("gsm8k: 1319 examples (generative)") and out.count("--- example") == 2
    assert "<|python_start|>16-3-4<|python_end|>[<|output_start|>9<|output_end|>]" in out  # the tool output is not trained
