"""The study's report card from stage summaries (the flow end to end: tests/test_deployments.py)."""

from __future__ import annotations


def test_report_card_numbers_and_table():
    from tasks.llm.eval.study_report import card_numbers, markdown_card

    def stage(mode, comm, rounds):
        return {"mode": mode, "comm_bytes_per_worker": comm, "sync_rounds": rounds, "final_train_loss": 1.0,
                "wall_seconds": 10.0}

    def ev(bpb, acc):
        return {"bpb": bpb, "tasks": {"addition": {"accuracy": acc, "chance": 0.0, "n": 10, "seconds": 1}}}

    arms = {
        "ddp-ddp-ddp": {"stages": {s: stage("ddp", 100.0, 10) for s in ("pretrain", "midtrain", "sft")},
                        "evals": {"pretrain": ev(2.0, 0.0), "midtrain": ev(1.8, 0.3), "sft": ev(1.7, 0.6)}},
        "diloco-diloco-diloco": {"stages": {s: stage("diloco", 10.0, 1) for s in ("pretrain", "midtrain", "sft")},
                                 "evals": {"pretrain": ev(2.1, 0.0), "midtrain": ev(1.9, 0.2), "sft": ev(1.8, 0.5)}},
    }
    numbers = card_numbers(arms)
    assert numbers["ddp-ddp-ddp"]["comm_bytes_per_worker"] == 300.0
    assert numbers["diloco-diloco-diloco"]["comm_bytes_per_worker"] == 30.0
    assert numbers["diloco-diloco-diloco"]["sft"] == {
        "mode": "diloco", "bpb": 1.8, "addition": 0.5, "comm_bytes_per_worker": 10.0, "sync_rounds": 1,
        "train_loss": 1.0, "wall_seconds": 10.0}
    table = markdown_card(numbers, {"addition": 0.0})
    assert "| ddp-ddp-ddp | sft | ddp | 1.7000 | 0.600 | 0.00 | 10 |" in table
    assert "| diloco-diloco-diloco | 0.00 | 30.0 |" in table
