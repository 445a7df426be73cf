"""Scores against the truth: P/R/F1 per part, anomaly taxonomy recall, histograms and PR curves."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from tasks.logs.data import Detection

TYPES = ("template", "attribute", "contextual")


def prf(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    tp = int((truth & predicted).sum())
    fp = int((~truth & predicted).sum())
    fn = int((truth & ~predicted).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "tp": tp, "fp": fp, "fn": fn}


def taxonomy(template: np.ndarray, content: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per line: "" (normal), or the anomaly's type.

    template: its template never occurs on a normal line; attribute: the template does, but this
    exact line (its parameters) never does; contextual: an identical line also occurs as normal,
    so only its context (the sequence around it) makes it anomalous.
    """
    labels = np.asarray(labels) == 1
    template, content = np.asarray(template), np.asarray(content, dtype=object)
    normal_templates = set(template[~labels])
    normal_lines = set(content[~labels])
    out = np.full(len(labels), "", dtype=object)
    for i in np.flatnonzero(labels):
        if template[i] not in normal_templates:
            out[i] = "template"
        elif content[i] not in normal_lines:
            out[i] = "attribute"
        else:
            out[i] = "contextual"
    return out


def evaluate(det: Detection, labels: np.ndarray, train: np.ndarray, types: np.ndarray, undefined: str | None = None) -> dict:
    """Metrics on the chronological test part (the headline), the train part, and recall per type.

    `undefined` (why, e.g. no labelled anomaly in the test part) blanks P/R/F1 instead of a 0.0
    that would read as measured; the counts stay.
    """
    labels = np.asarray(labels, dtype=np.int64)
    test = ~train
    headline = prf(labels[test], det.predicted[test])
    if undefined:
        headline.update(precision=None, recall=None, f1=None, note=undefined)
    out = {"model": det.model, **headline,
           "train_part": prf(labels[train], det.predicted[train]),
           "threshold": det.threshold, "train_s": round(det.train_s, 3), "score_s": round(det.score_s, 3),
           "lines_per_s_score": round(len(labels) / max(det.score_s, 1e-9), 1)}
    for kind in TYPES:
        sel = test & (types == kind)
        out[f"recall_{kind}"] = round(float(det.predicted[sel].mean()), 4) if sel.any() else None
        out[f"n_{kind}"] = int(sel.sum())
    return out


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def histogram_png(det: Detection, labels: np.ndarray, test: np.ndarray) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    scores = det.scores[test]
    bins = np.histogram_bin_edges(scores, bins=60)
    for value, name in ((0, "normal"), (1, "anomalous")):
        ax.hist(scores[labels[test] == value], bins=bins, alpha=0.6, label=name, log=True)
    if det.threshold is not None:
        ax.axvline(det.threshold, color="k", ls="--", label="threshold")
    ax.set(title=f"{det.model}: test scores", xlabel="score")
    ax.legend()
    return _fig_png(fig)


def pr_curve(det: Detection, labels: np.ndarray, test: np.ndarray) -> pd.DataFrame:
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(labels[test], det.scores[test])
    return pd.DataFrame({"recall": recall, "precision": precision})


def pr_png(curves: dict[str, pd.DataFrame], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, curve in curves.items():
        ax.plot(curve["recall"], curve["precision"], label=name)
    ax.set(title=title, xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(fontsize=7)
    return _fig_png(fig)
