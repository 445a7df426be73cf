"""Leaderboard, metrics JSON, plots and MLflow runs for a finished study."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.common.atomic import write_bytes, write_frame, write_json
from tasks.common.paths import seeds_dir
from tasks.forecast.config import ForecastConfig
from tasks.forecast.study import ComboResult

REFERENCE = seeds_dir() / "forecast_study_reference.csv"


def leaderboard(results: list[ComboResult]) -> pd.DataFrame:
    frame = pd.DataFrame([r.row() for r in results])
    frame["rank"] = frame.groupby(["dataset", "rate"])["smape"].rank(method="min").astype(int)
    return frame.sort_values(["dataset", "rate", "rank", "model"]).reset_index(drop=True)


def study_best(reference: Path = REFERENCE) -> pd.DataFrame | None:
    """The study's best published sMAPE per (dataset, rate), when the reference table is present."""
    if not reference.is_file():
        return None
    ref = pd.read_csv(reference)
    return ref.groupby(["dataset", "rate"], as_index=False)["smape_percent"].min().rename(columns={"smape_percent": "study_best"})


def summary(board: pd.DataFrame) -> dict[str, Any]:
    best = board[board["rank"] == 1].drop_duplicates(["dataset", "rate"])
    out: dict[str, Any] = {
        "n_combos": int(board[["dataset", "rate"]].drop_duplicates().shape[0]),
        "mean_smape": board.groupby("model")["smape"].mean().round(4).to_dict(),
        "best_model_counts": best["model"].value_counts().to_dict(),
    }
    ref = study_best()
    if ref is not None:
        joined = best.merge(ref, on=["dataset", "rate"], how="inner")
        if len(joined):
            out["beats_study_best"] = int((joined["smape"] <= joined["study_best"]).sum())
            out["compared_with_study"] = int(len(joined))
    return out


def refuse_non_finite(board: pd.DataFrame) -> None:
    """No inf or NaN reaches the leaderboard, metrics.json or MLflow: name the first combination that has one."""
    bad = ~np.isfinite(board.select_dtypes("number"))
    if bad.any(axis=None):
        row = board.loc[bad.any(axis=1).idxmax()]
        column = bad.loc[row.name].idxmax()
        raise FloatingPointError(
            f"refusing to write the leaderboard: {column} is {row[column]} for {row['model']} on "
            f"{row['dataset']}_{row['rate']}; drop that model or fix the series"
        )


def write_outputs(results: list[ComboResult], out_dir: Path) -> dict[str, Any]:
    board = leaderboard(results)
    refuse_non_finite(board)
    stats = summary(board)
    write_frame(out_dir / "leaderboard.csv", board)
    write_json(out_dir / "metrics.json", stats)
    means = board.groupby("model", as_index=False)["smape"].mean().sort_values("smape")
    write_frame(out_dir / "plots" / "mean_smape.csv", means)
    write_bytes(out_dir / "plots" / "mean_smape.png", _bar_png(means))
    return stats


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: Ray workers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=85, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _bar_png(means: pd.DataFrame) -> bytes:
    fig, ax = _pyplot().subplots(figsize=(7, 3.5))
    ax.barh(means["model"], means["smape"])
    ax.set_xlabel("mean sMAPE (%)")
    ax.invert_yaxis()
    return _png(fig)


def forecast_plot_png(result: ComboResult) -> bytes:
    fig, ax = _pyplot().subplots(figsize=(10, 3.5))
    index = pd.to_datetime(result.test_index)
    ax.plot(index, result.y_test, label="actual", lw=1)
    ax.plot(index, result.y_pred, label=f"{result.model} (sMAPE {result.metrics['smape']:.3f}%)", lw=1)
    ax.set_title(f"{result.dataset} {result.rate}: walk-forward forecast vs actual")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    return _png(fig)


def log_to_mlflow(results: list[ComboResult], cfg: ForecastConfig, stats: dict[str, Any], out_dir: Path, run_name: str) -> str:
    """A parent run for the study and a child run per combination; returns the parent run id.

    With `log_models`, each child run holds its fitted model (`model/model.pkl` and an MLflow pyfunc
    model), and the best model of each series is registered as `seedflow-forecast-<dataset>_<rate>`."""
    import mlflow

    from tasks.common.precision import hardware_tags
    from tasks.common.tracking import use_experiment
    from tasks.forecast.model_registry import log_forecaster, register_best

    use_experiment(cfg.experiment)
    tags = {**hardware_tags(), "precision": "fp32"}  # the deep forecasters are small: fp32 everywhere
    with mlflow.start_run(run_name=run_name, tags=tags) as parent:
        mlflow.log_params({"datasets": ",".join(cfg.datasets), "rates": ",".join(cfg.rates), "models": ",".join(cfg.models),
                           "tune_num_samples": cfg.tune.num_samples, "seed": cfg.seed})
        mlflow.log_metrics({f"mean_smape_{m}": v for m, v in stats["mean_smape"].items()})
        mlflow.log_artifact(str(out_dir / "leaderboard.csv"))
        mlflow.log_artifact(str(out_dir / "plots" / "mean_smape.png"))
        logged = []
        with tempfile.TemporaryDirectory() as tmp:
            for result in results:
                with mlflow.start_run(run_name=f"{result.dataset}_{result.rate}_{result.model}", nested=True,
                                      tags=tags) as child:
                    names = {"dataset": result.dataset, "rate": result.rate, "model": result.model}
                    mlflow.set_tags({**names, "walk_forward": result.walk_forward})
                    mlflow.log_params({k: str(v)[:500] for k, v in result.params.items()})
                    mlflow.log_metrics(result.metrics)
                    plot = Path(tmp) / "forecast_vs_actual.png"
                    plot.write_bytes(forecast_plot_png(result))
                    mlflow.log_artifact(str(plot))
                    if cfg.log_models and result.model_bytes:
                        model = Path(tmp) / "model.pkl"
                        model.write_bytes(result.model_bytes)
                        mlflow.log_artifact(str(model), artifact_path="model")
                        info = log_forecaster(child.info.run_id, model, result.params["horizon"],
                                              result.params["season"], names)
                        logged.append((names, result.metrics["smape"], info))
        registered = register_best(logged)
        if registered:
            mlflow.log_dict(registered, "registered_models.json")
        return parent.info.run_id
