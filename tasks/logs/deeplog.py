"""DeepLog (Du et al., CCS'17): an LSTM predicts the next template from the previous `history`;
a line is anomalous when its template is not among the top-k predictions.

Trained on the train part's known-normal targets (the history may hold anything). Distinct
(history, next) pairs are trained and scored once, with their counts as weights. Lines are
taken in global time order (per-node order would starve nodes with few lines). The fitted detector
(`DeepLogModel`) scores any parsed lines the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from tasks.common.progress import Progress
from tasks.logs.config import DeepLogConfig
from tasks.logs.data import Detection, LogData


class NextTemplate(nn.Module):
    def __init__(self, n_templates: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(n_templates, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, n_templates)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(history))
        return self.head(out[:, -1])


def windows(codes: np.ndarray, history: int) -> np.ndarray:
    """Row i = the `history` codes before line i (0 = start padding), then line i's code."""
    padded = np.concatenate([np.zeros(history, dtype=np.int64), codes])
    return np.lib.stride_tricks.sliding_window_view(padded, history + 1)


def template_codes(template: np.ndarray, known: np.ndarray) -> np.ndarray:
    """0 is the start padding, 1 a template unseen in training, 2.. the known templates."""
    return pd.Series(template).map({t: i + 2 for i, t in enumerate(known)}).fillna(1).to_numpy(np.int64)


@torch.no_grad()
def pair_ranks(model: NextTemplate, pairs: np.ndarray, n_known: int) -> np.ndarray:
    """Per (history, next) row: how many templates the model ranks above the next one."""
    model.eval()
    x_all, y_all = torch.from_numpy(pairs[:, :-1].copy()), torch.from_numpy(pairs[:, -1].copy())
    rank = np.zeros(len(pairs))
    for i in range(0, len(pairs), 4096):
        logits = model(x_all[i : i + 4096])
        target = logits.gather(1, y_all[i : i + 4096, None])
        rank[i : i + 4096] = (logits > target).sum(1).numpy()
    rank[pairs[:, -1] == 1] = n_known + 1  # unseen template: never predicted
    return rank


@dataclass
class DeepLogModel:
    """A fitted DeepLog: a line is anomalous when its template ranks `top_k` or lower after its history."""

    known: np.ndarray
    net: NextTemplate
    history: int
    top_k: int

    def score(self, data: LogData) -> tuple[np.ndarray, np.ndarray]:
        rows = windows(template_codes(data.template, self.known), self.history)
        pairs, pair_of_line = np.unique(rows, axis=0, return_inverse=True)
        scores = pair_ranks(self.net, pairs, len(self.known))[pair_of_line.ravel()]
        return scores, (scores >= self.top_k).astype(np.int8)


def run_deeplog(data: LogData, cfg: DeepLogConfig, seed: int = 0) -> Detection:
    torch.manual_seed(seed)
    start = time.perf_counter()
    known = np.unique(data.template[data.train])
    rows = windows(template_codes(data.template, known), cfg.history)
    pairs, pair_of_line = np.unique(rows, axis=0, return_inverse=True)
    pair_of_line = pair_of_line.ravel()
    target_mask = data.train & (data.weak == 0)
    weights = np.bincount(pair_of_line[target_mask], minlength=len(pairs)).astype(np.float32)
    used = np.flatnonzero(weights > 0)
    if len(used) == 0:
        raise ValueError("deeplog: no known-normal lines in the train part")
    model = NextTemplate(len(known) + 2, cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x_all, y_all = torch.from_numpy(pairs[:, :-1].copy()), torch.from_numpy(pairs[:, -1].copy())
    w_all = torch.from_numpy(weights)
    rng = np.random.default_rng(seed)
    progress = Progress(cfg.epochs, "deeplog", unit="pair", every_s=10.0)
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(used)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = torch.from_numpy(order[i : i + cfg.batch_size])
            w = w_all[idx]
            loss = (nn.functional.cross_entropy(model(x_all[idx]), y_all[idx], reduction="none") * w).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        progress.update(epoch, len(used), loss=total / len(used))
    train_s = time.perf_counter() - start

    t0 = time.perf_counter()
    scores = pair_ranks(model, pairs, len(known))[pair_of_line]
    score_s = time.perf_counter() - t0
    predicted = (scores >= cfg.top_k).astype(np.int8)
    return Detection("deeplog", scores, predicted, float(cfg.top_k), train_s, score_s,
                     {"pairs": len(pairs), "templates": len(known), "precision": "fp32"},
                     DeepLogModel(known, model, cfg.history, cfg.top_k))
