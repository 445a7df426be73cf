"""What every trainer keeps besides the weights: its cadence, its throughput and its MLflow metrics."""

from __future__ import annotations

import time

from tasks.llm.train.run_folder import RunContext


class Due:
    """Fires at the first allowed step at or after every multiple of `every` (and at the end)."""

    def __init__(self, every: int, step: int):
        self.every, self.next = every, (step // every + 1) * every if every else None

    def __call__(self, step: int, last: bool) -> bool:
        if last:
            return True
        if self.next is None or step < self.next:
            return False
        self.next = (step // self.every + 1) * self.every
        return True


class Throughput:
    """Tokens/s of this process after its first step, which pays for compilation and warm-up."""

    def __init__(self):
        self.first: tuple[float, int] | None = None
        self.seconds, self.tokens = 0.0, 0

    def add(self, seconds: float, tokens: int) -> None:
        if self.first is None:
            self.first = (seconds, tokens)
        else:
            self.seconds, self.tokens = self.seconds + seconds, self.tokens + tokens

    def rate(self) -> float:
        if self.seconds > 0:
            return self.tokens / self.seconds
        return self.first[1] / self.first[0] if self.first and self.first[0] > 0 else 0.0


class MlflowLogger:
    """Metrics of rank 0 into the run the driver created (no active-run state in the worker)."""

    def __init__(self, ctx: RunContext):
        self.client, self.run_id = None, ctx.mlflow_run_id
        if self.run_id:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(ctx.tracking_uri)

    def tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items() if self.client else ():
            self.client.set_tag(self.run_id, key, value)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
