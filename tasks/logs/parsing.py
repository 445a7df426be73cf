"""Template mining (drain3) and the token view PULL/LogLAB read.

Fast path: most lines are identical once numbers, hex, IPs and paths are masked, so each
distinct raw line is masked once and each distinct masked line goes through Drain once, in
order of first appearance. A repeat would only grow its cluster's size in plain drain3, so
the templates are the same (up to Drain's rare re-clustering of a repeat whose template has
since been generalised) at a fraction of the cost. Miner state is persisted (atomically) so
a later run continues the same clusters.
"""

from __future__ import annotations

import base64
import re
import time
import zlib
from pathlib import Path

import jsonpickle
import numpy as np
import pandas as pd
from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.persistence_handler import PersistenceHandler
from drain3.template_miner_config import TemplateMinerConfig

from tasks.common.atomic import write_bytes
from tasks.logs.config import ParseConfig

_B = r"((?<=[^A-Za-z0-9])|^)"  # token boundary before
_E = r"((?=[^A-Za-z0-9])|$)"  # and after
MASKS = [
    (_B + r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(:\d+)?" + _E, "IP"),
    (r"(?<![\w.])(/[\w.\-#]+){2,}/?", "PATH"),
    (_B + r"(0x[a-fA-F0-9]+|[a-fA-F0-9]{8,})" + _E, "HEX"),
    (_B + r"([\-+]?\d+(\.\d+)?)" + _E, "NUM"),
]
TOKEN = re.compile(r"<[a-z]+>|[a-z]+")


def masking_instructions() -> list[MaskingInstruction]:
    return [MaskingInstruction(pattern, name) for pattern, name in MASKS]


class Masker:
    """The same regexes drain3 applies, compiled once."""

    def __init__(self):
        self.rules = [(re.compile(p), f"<{name}>") for p, name in MASKS]

    def __call__(self, text: str) -> str:
        for regex, repl in self.rules:
            text = regex.sub(repl, text)
        return text


def tokens(masked: str, max_tokens: int) -> list[str]:
    """Lowercase word tokens; masked values stay as one token (`<num>`, `<ip>`, ...)."""
    return TOKEN.findall(masked.lower())[:max_tokens]


class AtomicFilePersistence(PersistenceHandler):
    """drain3 state in one file, replaced atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def save_state(self, state: bytes) -> None:
        write_bytes(self.path, state)

    def load_state(self) -> bytes | None:
        return self.path.read_bytes() if self.path.is_file() else None


class Miner(TemplateMiner):
    """drain3's TemplateMiner with a state loader that works on Python 3.11 (stock one mutates a
    dict while iterating it)."""

    def load_state(self) -> None:
        state = self.persistence_handler.load_state()
        if state is None:
            return
        if self.config.snapshot_compress_state:
            state = zlib.decompress(base64.b64decode(state))
        drain = jsonpickle.loads(state)
        drain.id_to_cluster = {int(k): v for k, v in drain.id_to_cluster.items()}
        drain.profiler = self.profiler
        self.drain = drain


def miner_config(cfg: ParseConfig, masking: bool = True) -> TemplateMinerConfig:
    conf = TemplateMinerConfig()
    conf.drain_sim_th, conf.drain_depth, conf.drain_max_children = cfg.sim_th, cfg.depth, cfg.max_children
    conf.masking_instructions = masking_instructions() if masking else []
    conf.snapshot_interval_minutes = 10**6  # we save once, at the end
    conf.profiling_enabled = False
    return conf


def parse(frame: pd.DataFrame, cfg: ParseConfig, state_path: str | Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Add template_id, template and tokens to a loaded frame; returns (parsed, stats)."""
    if frame.empty:
        raise ValueError("cannot parse an empty log frame")
    start = time.perf_counter()
    raw_codes, raw_unique = pd.factorize(frame["content"], sort=False)
    mask = Masker()
    masked_of_raw = [mask(text) for text in raw_unique]
    masked_codes, masked_unique = pd.factorize(pd.Series(masked_of_raw), sort=False)

    handler = AtomicFilePersistence(state_path) if state_path else None
    miner = Miner(persistence_handler=handler, config=miner_config(cfg, masking=False))
    clusters = []
    for text in masked_unique:
        cluster, _ = miner.drain.add_log_message(text)
        clusters.append(cluster)
    counts = np.bincount(masked_codes[raw_codes], minlength=len(masked_unique))
    for cluster, count in zip(clusters, counts):
        cluster.size += int(count) - 1  # Drain counted the first occurrence only
    cluster_id = np.array([c.cluster_id for c in clusters], dtype=np.int64)
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    masked_tokens = [tokens(text, cfg.max_tokens) for text in masked_unique]
    if handler is not None:
        miner.save_state("parse")

    line_masked = masked_codes[raw_codes]
    out = frame.copy()
    out["template_id"] = cluster_id[line_masked]
    out["template"] = pd.Series(cluster_id[line_masked]).map(templates).to_numpy()
    out["masked_id"] = line_masked.astype(np.int64)
    out["tokens"] = pd.Series(masked_tokens, dtype=object).iloc[line_masked].to_numpy()
    seconds = time.perf_counter() - start
    stats = {
        "lines": len(out),
        "unique_raw": len(raw_unique),
        "unique_masked": len(masked_unique),
        "templates": len(templates),
        "parse_s": round(seconds, 3),
        "lines_per_s": round(len(out) / max(seconds, 1e-9), 1),
    }
    return out, stats


def plain_drain(contents: list[str] | pd.Series, cfg: ParseConfig) -> tuple[np.ndarray, float]:
    """Reference: stock drain3 TemplateMiner, one call per line. Returns (cluster ids, seconds)."""
    miner = TemplateMiner(config=miner_config(cfg, masking=True))
    start = time.perf_counter()
    ids = np.fromiter((miner.add_log_message(text)["cluster_id"] for text in contents), dtype=np.int64, count=len(contents))
    return ids, time.perf_counter() - start


def grouping_accuracy(truth: pd.Series | np.ndarray, predicted: pd.Series | np.ndarray) -> float:
    """Zhu et al. (ICSE-SEIP'19): share of lines whose parsed group equals their true group exactly."""
    truth, predicted = pd.Series(np.asarray(truth)), pd.Series(np.asarray(predicted))
    if len(truth) != len(predicted) or len(truth) == 0:
        raise ValueError("grouping accuracy needs two equally long, non-empty label sequences")
    truth_sizes = truth.value_counts()
    correct = 0
    for _, members in truth.groupby(predicted.to_numpy()):
        ids = members.unique()
        if len(ids) == 1 and truth_sizes[ids[0]] == len(members):
            correct += len(members)
    return correct / len(truth)
