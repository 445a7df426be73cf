"""Baselines: PCA, Isolation Forest, Invariants Mining and LogCluster on template-count vectors
of fixed time windows (per node), plus a supervised upper bound trained on true labels.

The count-vector methods judge a window (loglizer style); each line inherits its window's
verdict. They fit on the train part's known-normal lines only (the windows' counts without the
lines inside failure windows), the same weak information PULL and DeepLog get. Distinct count
vectors are fitted and scored once with their counts as weights.

Each run returns its fitted detector (`CountModel`, `TokenModel`): the scoring half alone, which
scores any parsed lines the way the run scored its own (logged as an MLflow model).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import norm

from tasks.logs.config import CountConfig
from tasks.logs.data import Detection, LogData


def window_counts(data: LogData, session_s: float, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per line its (node, time bucket) window and its template column (0 = not in `known`); the windows' counts."""
    bucket = np.floor(data.timestamp / session_s).astype(np.int64)
    of_line, _ = pd.factorize(pd.MultiIndex.from_arrays([data.node, bucket]))
    cols = pd.Series(data.template).map({t: i + 1 for i, t in enumerate(known)}).fillna(0).to_numpy(np.int64)
    shape = (int(of_line.max()) + 1, len(known) + 1)
    return of_line, cols, sparse.csr_matrix((np.ones(data.n), (of_line, cols)), shape=shape).toarray()


class Sessions:
    """Template-count vectors of (node, time bucket) windows; column 0 = template unseen in training."""

    def __init__(self, data: LogData, session_s: float):
        self.known = np.unique(data.template[data.train])
        self.of_line, cols, full = window_counts(data, session_s, self.known)
        n, shape = full.shape[0], full.shape
        fit = data.train & (data.weak == 0)
        if not fit.any():
            raise ValueError("no known-normal lines in the train part to fit count-vector baselines on")
        normal = sparse.csr_matrix((np.ones(fit.sum()), (self.of_line[fit], cols[fit])), shape=shape).toarray()
        fit_sessions = np.unique(self.of_line[fit])
        # rows: every window as it is (to score), then the train windows' known-normal part (to fit)
        self.vectors, inverse = np.unique(np.concatenate([full, normal[fit_sessions]]), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        self.of_session = inverse[:n]
        self.weight = np.bincount(inverse[n:], minlength=len(self.vectors)).astype(np.float64)
        self.train_rows = self.weight > 0

    def to_lines(self, per_vector: np.ndarray) -> np.ndarray:
        return per_vector[self.of_session[self.of_line]]


def _idf(s: Sessions) -> np.ndarray:
    df = ((s.vectors > 0) * s.weight[:, None]).sum(0)
    return np.log((s.weight.sum() + 1) / (df + 1)) + 1.0


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _pca_verdict(vectors, idf, mean, p, threshold):
    centred = vectors * idf - mean
    spe = ((centred - centred @ p @ p.T) ** 2).sum(1)
    return spe, spe > threshold


def _iforest_verdict(vectors, forest):
    return -forest.score_samples(vectors), forest.predict(vectors) == -1


def _invariants_verdict(vectors, invariants, tol):
    violation = np.abs(vectors @ invariants.T).max(1) if len(invariants) else np.zeros(len(vectors))
    return violation, violation > tol


def _logcluster_verdict(vectors, idf, centroids, max_dist):
    distance = 1 - (_unit_rows(vectors * idf) @ centroids.T).max(1)
    return distance, distance > max_dist


VERDICTS = {"pca": _pca_verdict, "iforest": _iforest_verdict, "invariants": _invariants_verdict,
            "logcluster": _logcluster_verdict}


@dataclass
class CountModel:
    """A fitted count-vector baseline: the training templates, the window length and its verdict's state."""

    kind: str
    known: np.ndarray
    session_s: float
    state: dict[str, Any]

    def score(self, data: LogData) -> tuple[np.ndarray, np.ndarray]:
        """(score, 0/1 verdict) per line, each line judged by its window's template counts."""
        of_line, _, full = window_counts(data, self.session_s, self.known)
        vectors, of_window = np.unique(full, axis=0, return_inverse=True)
        scores, predicted = VERDICTS[self.kind](vectors, **self.state)
        line = of_window.ravel()[of_line]
        return scores[line].astype(np.float64), predicted[line].astype(np.int8)


def _detection(s: Sessions, fitted: CountModel, start, t_fit, threshold, info=None) -> Detection:
    """Score the run's own windows with the fitted verdict, as `fitted.score` scores any lines."""
    scores, predicted = VERDICTS[fitted.kind](s.vectors, **fitted.state)
    t_end = time.perf_counter()
    return Detection(fitted.kind, s.to_lines(scores).astype(np.float64), s.to_lines(predicted).astype(np.int8),
                     threshold, t_fit - start, t_end - t_fit, {"windows": len(s.of_session), **(info or {})}, fitted)


def run_pca(data: LogData, cfg: CountConfig) -> Detection:
    """Xu et al. (SOSP'09): residual (SPE) outside the principal subspace, Q-statistic threshold."""
    start = time.perf_counter()
    s = Sessions(data, cfg.session_s)
    idf = _idf(s)
    x = s.vectors * idf
    w = s.weight / s.weight.sum()
    mean = (x * w[:, None]).sum(0)
    xc = (x - mean)[s.train_rows] * np.sqrt(w[s.train_rows])[:, None]
    _, sv, vt = np.linalg.svd(xc, full_matrices=True)
    lam = np.zeros(vt.shape[0])
    lam[: len(sv)] = sv**2
    k = int(np.searchsorted(np.cumsum(lam) / max(lam.sum(), 1e-12), cfg.pca_variance) + 1)
    p = vt[:k].T
    rest = lam[k:]
    phi = [float((rest**i).sum()) for i in (1, 2, 3)]
    if phi[0] <= 0:
        threshold = 1e-9
    else:
        h0 = 1 - 2 * phi[0] * phi[2] / (3 * phi[1] ** 2)
        c = norm.ppf(1 - cfg.pca_alpha)
        threshold = phi[0] * (c * np.sqrt(2 * phi[1] * h0**2) / phi[0] + 1 + phi[1] * h0 * (h0 - 1) / phi[0] ** 2) ** (1 / h0)
    t_fit = time.perf_counter()
    fitted = CountModel("pca", s.known, cfg.session_s, {"idf": idf, "mean": mean, "p": p, "threshold": float(threshold)})
    return _detection(s, fitted, start, t_fit, float(threshold), {"components": k})


def run_iforest(data: LogData, cfg: CountConfig, seed: int = 0) -> Detection:
    from sklearn.ensemble import IsolationForest

    start = time.perf_counter()
    s = Sessions(data, cfg.session_s)
    model = IsolationForest(n_estimators=cfg.iforest_trees, random_state=seed)
    model.fit(s.vectors[s.train_rows], sample_weight=s.weight[s.train_rows])
    t_fit = time.perf_counter()
    return _detection(s, CountModel("iforest", s.known, cfg.session_s, {"forest": model}), start, t_fit,
                      float(-model.offset_))


def run_invariants(data: LogData, cfg: CountConfig) -> Detection:
    """Lou et al. (ATC'10): linear invariants a.x = 0 of the training windows' counts.

    Invariants are the (near-)null space of the training count matrix; a window violating any
    (including "this template never occurred in training") is anomalous.
    """
    start = time.perf_counter()
    s = Sessions(data, cfg.session_s)
    x = s.vectors[s.train_rows]
    _, sv, vt = np.linalg.svd(x, full_matrices=True)
    full = np.zeros(vt.shape[0])
    full[: len(sv)] = sv
    invariants = vt[full <= cfg.invariant_eps * max(full.max(), 1.0)]
    tol = 1e-6 + (np.abs(x @ invariants.T).max() if len(invariants) else 0.0)
    t_fit = time.perf_counter()
    fitted = CountModel("invariants", s.known, cfg.session_s, {"invariants": invariants, "tol": float(tol)})
    return _detection(s, fitted, start, t_fit, float(tol), {"invariants": len(invariants)})


def run_logcluster(data: LogData, cfg: CountConfig, seed: int = 0, max_fit: int = 2000) -> Detection:
    """Lin et al. (ICSE'16): cluster idf-weighted windows; far from every training cluster = anomalous."""
    from sklearn.cluster import AgglomerativeClustering

    start = time.perf_counter()
    s = Sessions(data, cfg.session_s)
    idf = _idf(s)
    x = _unit_rows(s.vectors * idf)
    fit_rows = np.flatnonzero(s.train_rows)
    if len(fit_rows) > max_fit:
        fit_rows = np.random.default_rng(seed).choice(fit_rows, max_fit, replace=False)
    if len(fit_rows) == 1:
        centroids = x[fit_rows]
    else:
        labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                         distance_threshold=cfg.logcluster_max_dist).fit_predict(x[fit_rows])
        centroids = _unit_rows(np.stack([x[fit_rows][labels == c].mean(0) for c in np.unique(labels)]))
    t_fit = time.perf_counter()
    fitted = CountModel("logcluster", s.known, cfg.session_s,
                        {"idf": idf, "centroids": centroids, "max_dist": cfg.logcluster_max_dist})
    return _detection(s, fitted, start, t_fit, cfg.logcluster_max_dist, {"clusters": len(centroids)})


def _token_list(seq: tuple[str, ...]) -> list[str]:
    return list(seq)  # a module-level analyzer: a fitted vectorizer must pickle


@dataclass
class TokenModel:
    """The fitted supervised upper bound: token counts of a line -> probability it is an anomaly."""

    vectorizer: Any
    classifier: Any

    def score(self, data: LogData) -> tuple[np.ndarray, np.ndarray]:
        scores = self.classifier.predict_proba(self.vectorizer.transform(data.seq_tokens))[:, 1][data.seq]
        return scores, (scores > 0.5).astype(np.int8)


def run_supervised(data: LogData, labels: np.ndarray, seed: int = 0) -> Detection:
    """Upper bound: logistic regression on a line's token counts, trained on TRUE train labels."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    labels = np.asarray(labels, dtype=np.int64)
    vec = CountVectorizer(analyzer=_token_list)
    x = vec.fit_transform(data.seq_tokens)
    keys = data.seq[data.train] * 2 + labels[data.train]
    uniq, counts = np.unique(keys, return_counts=True)
    y = uniq % 2
    if len(np.unique(y)) < 2:
        raise ValueError("supervised baseline needs both classes in the train part")
    model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x[uniq // 2], y, sample_weight=counts)
    train_s = time.perf_counter() - start
    t0 = time.perf_counter()
    fitted = TokenModel(vec, model)
    scores, predicted = fitted.score(data)
    return Detection("supervised", scores, predicted, 0.5, train_s, time.perf_counter() - t0, {}, fitted)
