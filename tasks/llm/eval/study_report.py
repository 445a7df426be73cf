"""The study's report card: bpb and every task's score per stage and arm, communication per arm.

Inputs are plain dicts (stage summaries from `run_training`, results of `evaluate_checkpoint`),
so the card can be rebuilt from the JSON the study writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.common.atomic import write_json, write_text

STAGES = ("pretrain", "midtrain", "sft")


def arm_name(modes: list[str]) -> str:
    return "-".join(modes)


def card_numbers(arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{arm: {stage: {bpb, <task>: accuracy, comm_bytes_per_worker, ...}, comm_bytes_per_worker, wall_seconds}}."""
    out: dict[str, Any] = {}
    for arm, record in arms.items():
        row: dict[str, Any] = {}
        total_wall = 0.0
        for stage in STAGES:
            if stage not in record["stages"]:
                continue
            summary, evaluation = record["stages"][stage], record["evals"][stage]
            comm = float(summary.get("comm_bytes_per_worker") or 0.0)
            wall = float(summary.get("wall_seconds") or 0.0)
            total_wall += wall  # a stage shared with another arm counts for both: the arm's own pipeline
            row[stage] = {
                "mode": summary["mode"], "bpb": evaluation.get("bpb"),
                **{task: scores["accuracy"] for task, scores in evaluation["tasks"].items()},
                "comm_bytes_per_worker": comm, "sync_rounds": summary.get("sync_rounds", 0),
                "train_loss": summary.get("final_train_loss"), "wall_seconds": wall,
            }
        row["comm_bytes_per_worker"] = sum(row[s]["comm_bytes_per_worker"] for s in STAGES if s in row)
        row["wall_seconds"] = total_wall
        out[arm] = row
    return out


def chance_levels(arms: dict[str, dict[str, Any]]) -> dict[str, float]:
    for record in arms.values():
        for evaluation in record["evals"].values():
            return {task: scores["chance"] for task, scores in evaluation["tasks"].items()}
    return {}


def markdown_card(numbers: dict[str, Any], chance: dict[str, float], title: str = "LLM study report card") -> str:
    tasks = list(chance)
    head = ["arm", "stage", "mode", "bpb", *tasks, "comm MB/worker", "sync rounds"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, row in numbers.items():
        for stage in STAGES:
            if stage not in row:
                continue
            s = row[stage]
            bpb = "n/a" if s["bpb"] is None else f"{s['bpb']:.4f}"
            cells = [arm, stage, s["mode"], bpb, *(f"{s.get(t, float('nan')):.3f}" for t in tasks),
                     f"{s['comm_bytes_per_worker'] / 1e6:.2f}", str(s["sync_rounds"])]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| arm | comm MB/worker (all stages) | train wall s |", "|---|---|---|"]
    for arm, row in numbers.items():
        lines.append(f"| {arm} | {row['comm_bytes_per_worker'] / 1e6:.2f} | {row['wall_seconds']:.1f} |")
    if chance:
        lines += ["", "Chance: " + ", ".join(f"{t} {c:.3f}" for t, c in chance.items())
                  + " (multiple choice: 1 / choices; generative: always giving the most common answer)."]
    return "\n".join(lines) + "\n"


def write_card(arms: dict[str, dict[str, Any]], out_dir: str | Path) -> dict[str, Any]:
    """report.md, metrics.json (DVC metrics: the card's numbers) and study.json (everything)."""
    out = Path(out_dir)
    numbers = card_numbers(arms)
    chance = chance_levels(arms)
    text = markdown_card(numbers, chance)
    write_text(out / "report.md", text)
    write_json(out / "metrics.json", numbers)
    write_json(out / "study.json", arms)
    return {"numbers": numbers, "chance": chance, "markdown": text, "report": str(out / "report.md"),
            "metrics": str(out / "metrics.json")}


def start_arm_run(experiment: str, arm: str, tags: dict[str, str] | None = None) -> str:
    """The arm's MLflow parent run (its stage runs are children); returns its id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from tasks.common.precision import hardware_tags
    from tasks.common.tracking import use_experiment

    experiment_id = use_experiment(experiment)
    tags = {"arm": arm, "study": "ddp-vs-diloco", **hardware_tags(), **(tags or {})}
    return MlflowClient(mlflow.get_tracking_uri()).create_run(experiment_id, run_name=f"study-{arm}", tags=tags).info.run_id


def log_card(card: dict[str, Any], run_ids: dict[str, str]) -> None:
    """Each arm's row of the card as metrics of its parent run, with the card itself as an artifact."""
    import mlflow

    for arm, run_id in run_ids.items():
        row = card["numbers"][arm]
        metrics = {"comm_bytes_per_worker": row["comm_bytes_per_worker"], "wall_seconds": row["wall_seconds"]}
        for stage in STAGES:
            for key, value in row[stage].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics[f"{stage}_{key}"] = float(value)
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics(metrics)
            mlflow.log_artifact(card["report"])
            mlflow.log_text(card["markdown"], "report_card.md")
