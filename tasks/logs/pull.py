"""PULL (iterative PU learning) and LogLAB (its single round) on log-line tokens.

A small attention encoder maps a line's tokens to a vector z; the anomaly score is the squared
distance of z to a centre (the origin; the output bias lets the net place it). Known-normal
lines (outside failure windows) are pulled in, unknown lines (inside) pushed out, with the
hypersphere-classifier loss: normal d, unknown -log(1 - exp(-d)), each set weighted by the
other's size so the imbalance does not decide the fit. PU rounds: unknown lines scoring below
the `relabel_quantile` of known-normal scores join the normal set; retrain (warm start) until
that set stops changing or `max_rounds`.

Threshold, label-free (the PU midpoint): after the last round, the train part's unknown lines
still scoring above the relabel cut are the presumed anomalies; the threshold is the midpoint of
the mean score of known-normal lines and the mean score of presumed anomalies. It reads scores
and weak labels only, never the ground truth (LogLAB's notebook takes the same midpoint with
true labels).

Training and scoring run on distinct token sequences with their counts as weights (300k Spirit
lines are ~13k sequences), batched by length, under bf16 autocast where `precision` resolves to
bf16 (`auto`: only on a CPU where bf16 is fast; on an AVX2-only CPU it is tens of times slower).
The fitted detector (`PullModel`: vocabulary, encoder, threshold) scores any parsed lines the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tasks.common.precision import resolve_precision
from tasks.common.progress import Progress
from tasks.logs.config import PullConfig
from tasks.logs.data import Detection, LogData, seq_counts, weighted_quantile

PAD, UNK = 0, 1


class Vocab:
    def __init__(self, sequences: list[tuple[str, ...]], used: np.ndarray):
        words = sorted({t for s, u in zip(sequences, used) if u for t in s})
        self.index = {w: i + 2 for i, w in enumerate(words)}

    def __len__(self) -> int:
        return len(self.index) + 2

    def encode(self, seq: tuple[str, ...]) -> list[int]:
        return [self.index.get(t, UNK) for t in seq] or [UNK]


class LineEncoder(nn.Module):
    def __init__(self, vocab: int, max_len: int, dim: int, heads: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Squared distance to the centre per line."""
        pad = ids == PAD
        pos = torch.arange(ids.shape[1], device=ids.device)
        h = self.encoder(self.embed(ids) + self.pos(pos), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.out(pooled).float().pow(2).sum(-1)


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Indices grouped by similar length (little padding); batch order shuffled when rng is given."""
    order = np.argsort(lengths, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def pad_all(encoded: list[list[int]]) -> torch.Tensor:
    """One padded id matrix for every sequence; a batch slices rows and its own width."""
    out = torch.zeros(len(encoded), max(len(e) for e in encoded), dtype=torch.long)
    for row, ids in enumerate(encoded):
        out[row, : len(ids)] = torch.tensor(ids)
    return out


@torch.no_grad()
def sequence_scores(model: LineEncoder, ids: torch.Tensor, lengths: np.ndarray, batch_size: int,
                    precision: str) -> np.ndarray:
    """Distance to the centre per padded id row, in length-sorted batches (eval mode)."""
    model.eval()
    out = np.zeros(len(lengths))
    for idx in length_batches(lengths, batch_size, None):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out[idx] = model(ids[idx, : lengths[idx].max()]).float().numpy()
    return out


@dataclass
class PullModel:
    """A fitted PULL / LogLAB detector: lines whose distance exceeds `threshold` are anomalies."""

    vocab: Vocab
    encoder: LineEncoder
    threshold: float
    precision: str
    batch_size: int

    def score(self, data: LogData) -> tuple[np.ndarray, np.ndarray]:
        longest = self.encoder.pos.num_embeddings
        encoded = [self.vocab.encode(s[:longest]) for s in data.seq_tokens]
        lengths = np.array([len(e) for e in encoded])
        scores = sequence_scores(self.encoder, pad_all(encoded), lengths, self.batch_size, self.precision)[data.seq]
        return scores, (scores > self.threshold).astype(np.int8)


def hsc_loss(d: torch.Tensor, w_normal: torch.Tensor, w_unknown: torch.Tensor) -> torch.Tensor:
    pushed = -torch.log(-torch.expm1(-d.clamp(min=1e-6)))
    return (w_normal * d + w_unknown * pushed).sum() / (w_normal + w_unknown).sum().clamp(min=1e-12)


class PullTrainer:
    def __init__(self, data: LogData, cfg: PullConfig, max_len: int, seed: int):
        torch.manual_seed(seed)
        self.cfg, self.rng = cfg, np.random.default_rng(seed)
        self.precision = resolve_precision(cfg.precision, "cpu")
        self.vocab = Vocab(data.seq_tokens, seq_counts(data, data.train) > 0)
        self.encoded = [self.vocab.encode(s) for s in data.seq_tokens]
        self.lengths = np.array([len(e) for e in self.encoded])
        self.ids = pad_all(self.encoded)
        self.model = LineEncoder(len(self.vocab), max_len, cfg.dim, cfg.heads, cfg.layers)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=1e-4)

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def fit(self, w_normal: np.ndarray, w_unknown: np.ndarray, epochs: int, label: str) -> float:
        """Weighted HSC training over the sequences with any weight; returns the last epoch's loss."""
        # balance the two sets: each contributes half of the total weight
        wn = w_normal / max(w_normal.sum(), 1e-12)
        wu = w_unknown / max(w_unknown.sum(), 1e-12) if w_unknown.sum() > 0 else w_unknown
        used = np.flatnonzero((wn + wu) > 0)
        progress = Progress(epochs, label, unit="seq", every_s=10.0)
        loss_value = float("nan")
        for epoch in range(1, epochs + 1):
            total, weight = 0.0, 0.0
            for b in length_batches(self.lengths[used], self.cfg.batch_size, self.rng):
                idx = used[b]
                ids = self.ids[idx, : self.lengths[idx].max()]
                with self._autocast():
                    d = self.model(ids)
                tn, tu = torch.from_numpy(wn[idx]).float(), torch.from_numpy(wu[idx]).float()
                loss = hsc_loss(d, tn, tu)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                bw = float((tn + tu).sum())
                total, weight = total + loss.item() * bw, weight + bw
            loss_value = total / max(weight, 1e-12)
            progress.update(epoch, len(used), loss=loss_value)
        return loss_value

    def score(self) -> np.ndarray:
        out = sequence_scores(self.model, self.ids, self.lengths, 4 * self.cfg.batch_size, self.precision)
        self.model.train()
        return out


def run_pull(data: LogData, cfg: PullConfig, max_len: int, seed: int = 0, rounds: int | None = None, name: str = "pull") -> Detection:
    """Train on the train part's weak labels, score every line; `rounds=1` is LogLAB."""
    rounds = rounds or cfg.max_rounds
    start = time.perf_counter()
    normal = seq_counts(data, data.train & (data.weak == 0))
    unknown = seq_counts(data, data.train & (data.weak == 1))
    if normal.sum() == 0:
        raise ValueError("no known-normal lines in the train part: the failure windows cover everything")
    trainer = PullTrainer(data, cfg, max_len, seed)
    relabelled = np.zeros(len(normal), dtype=bool)
    history = []
    for r in range(1, rounds + 1):
        w_n = normal + unknown * relabelled
        w_u = unknown * ~relabelled
        loss = trainer.fit(w_n, w_u, cfg.epochs if r == 1 else cfg.epochs_next, f"{name} round {r}")
        seq_scores = trainer.score()
        cut = weighted_quantile(seq_scores, normal, cfg.relabel_quantile)
        new = (unknown > 0) & (seq_scores <= cut)
        history.append({"round": r, "loss": round(loss, 5), "relabelled_lines": int(unknown[new].sum())})
        changed = unknown[new != relabelled].sum() / max(unknown.sum(), 1)
        relabelled = new
        if r > 1 and changed <= cfg.relabel_tol:
            break
    threshold = pu_threshold(seq_scores, normal, unknown * ~relabelled)
    train_s = time.perf_counter() - start
    t0 = time.perf_counter()
    scores = trainer.score()[data.seq]
    score_s = time.perf_counter() - t0
    fitted = PullModel(trainer.vocab, trainer.model, threshold, trainer.precision, 4 * cfg.batch_size)
    return Detection(name, scores, (scores > threshold).astype(np.int8), threshold, train_s, score_s,
                     {"rounds": len(history), "history": history, "sequences": len(data.seq_tokens),
                      "precision": trainer.precision}, fitted)


def pu_threshold(seq_scores: np.ndarray, normal: np.ndarray, presumed: np.ndarray) -> float:
    """Midpoint of the count-weighted mean scores of known-normal and presumed-anomalous sequences."""
    mean_normal = float(np.average(seq_scores, weights=normal))
    if presumed.sum() == 0:
        return float(seq_scores[normal > 0].max())
    return (mean_normal + float(np.average(seq_scores, weights=presumed))) / 2


def run_loglab(data: LogData, cfg: PullConfig, max_len: int, seed: int = 0) -> Detection:
    return run_pull(data, cfg, max_len, seed, rounds=1, name="loglab")
