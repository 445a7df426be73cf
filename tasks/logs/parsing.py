"""Template mining (drain3) and the token view PULL/LogLAB read.

Fast path, the same templates as drain3 with the same masks at a fraction of the cost:
- every distinct whitespace-separated word is masked once, in one regex pass per mask over all
  of them (a mask never spans whitespace, so a word masks as it would inside its line);
- each distinct masked line goes through Drain once, in order of first appearance (a repeat
  would only grow its cluster's size in plain drain3; up to Drain's rare re-clustering of a
  repeat whose template has since been generalised);
- Drain scores a leaf's candidate templates with C-level loops (`FastDrain`, same choices).
Miner state is persisted (atomically) so a later run continues the same clusters.
"""

from __future__ import annotations

import base64
import re
import time
import zlib
from itertools import repeat
from operator import attrgetter, eq
from pathlib import Path

import jsonpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from drain3 import TemplateMiner
from drain3.drain import Drain, param_str
from drain3.masking import MaskingInstruction
from drain3.persistence_handler import PersistenceHandler
from drain3.template_miner_config import TemplateMinerConfig

from tasks.common.atomic import write_bytes
from tasks.logs.config import ParseConfig

_B = r"(?<![A-Za-z0-9])"  # token boundary before (start or a non-alphanumeric character)
_E = r"(?![A-Za-z0-9])"  # and after; negative lookarounds scan ~2x faster than `(?<=[^...])|^`
MASKS = [
    (_B + r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d+)?" + _E, "IP"),
    (r"/(?<![\w.]/)[\w.\-#]+(?:/[\w.\-#]+)+/?", "PATH"),  # = (?<![\w.])(/[\w.\-#]+){2,}/?, led by a literal
    (_B + r"(?:0x[a-fA-F0-9]+|[a-fA-F0-9]{8,})" + _E, "HEX"),
    (_B + r"[\-+]?\d+(?:\.\d+)?" + _E, "NUM"),
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

    def words(self, words: list[str]) -> list[str]:
        """Mask many whitespace-free words at once: one pass per regex over them joined by spaces."""
        return self(" ".join(words)).split(" ")


def tokens(masked: str, max_tokens: int) -> list[str]:
    """Lowercase word tokens; masked values stay as one token (`<num>`, `<ip>`, ...)."""
    return TOKEN.findall(masked.lower())[:max_tokens]


def _encode(values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Per value: the index of its distinct value; the distinct values in order of first appearance."""
    encoded = pc.dictionary_encode(values)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def mask_lines(contents: pd.Series, masker: Masker) -> tuple[np.ndarray, list[str], int]:
    """Per line: the index of its masked form; the distinct masked forms (words joined by one space,
    as drain3 splits them) in order of first appearance; and how many distinct raw lines there are."""
    lines = pa.array(contents, type=pa.large_string())  # chunked when pandas holds several chunks
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    raw_of_line, raw = _encode(lines.fill_null(""))
    words = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(raw))  # = Python's str.split(), but "" -> [""]
    word_codes, distinct = _encode(pc.list_flatten(words))
    masked_words = pa.array(masker.words(distinct.to_pylist()), pa.large_string()).take(word_codes)
    joined = pc.binary_join(pa.LargeListArray.from_arrays(words.offsets, masked_words), pa.scalar(" ", pa.large_string()))
    masked_of_raw, masked = _encode(joined)
    return masked_of_raw[raw_of_line], masked.to_pylist(), len(raw)


_TEMPLATE = attrgetter("log_template_tokens")


class FastDrain(Drain):
    """drain3's Drain making the same choices faster: a leaf's candidates are compared with
    C-level loops instead of a Python loop per template token."""

    def fast_match(self, cluster_ids: list, tokens: list[str]):
        if param_str in tokens or not isinstance(self.id_to_cluster, dict) or not cluster_ids:
            return super().fast_match(cluster_ids, tokens)  # a literal `<*>` in the line, or an LRU cache
        clusters = list(map(self.id_to_cluster.__getitem__, cluster_ids))
        templates = list(map(_TEMPLATE, clusters))
        # equal tokens; a template's `<*>` never equals a line token here, as in drain3's count
        sims = list(map(sum, map(map, repeat(eq), templates, repeat(tokens))))
        top = max(sims)
        if top / len(tokens) < self.sim_th:
            return None
        if sims.count(top) == 1:
            return clusters[sims.index(top)]
        keys = list(zip(sims, map(tuple.count, templates, repeat(param_str))))  # ties: more parameters win
        return clusters[max(range(len(keys)), key=keys.__getitem__)]  # first of equals, as drain3

    @staticmethod
    def get_template(seq1, seq2):
        return [a if a == b else param_str for a, b in zip(seq1, seq2)]


class AtomicFilePersistence(PersistenceHandler):
    """drain3 state in one file, replaced atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def save_state(self, state: bytes) -> None:
        write_bytes(self.path, state)

    def load_state(self) -> bytes | None:
        return self.path.read_bytes() if self.path.is_file() else None


class Miner(TemplateMiner):
    """drain3's TemplateMiner on `FastDrain`, with a state loader that works on Python 3.11 (the
    stock one mutates a dict while iterating it)."""

    def __init__(self, persistence_handler: PersistenceHandler | None = None, config: TemplateMinerConfig | None = None):
        super().__init__(persistence_handler, config)
        if type(self.drain) is Drain:  # fresh, or restored from a stock drain3 state
            self.drain.__class__ = FastDrain  # it adds behaviour only, no state

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
    """Add template_id, template, masked_id and tokens to a loaded frame; returns (parsed, stats)."""
    if frame.empty:
        raise ValueError("cannot parse an empty log frame")
    start = time.perf_counter()
    line_masked, masked, unique_raw = mask_lines(frame["content"], Masker())
    handler = AtomicFilePersistence(state_path) if state_path else None
    miner = Miner(persistence_handler=handler, config=miner_config(cfg, masking=False))
    clusters = [miner.drain.add_log_message(text)[0] for text in masked]
    for cluster, count in zip(clusters, np.bincount(line_masked, minlength=len(masked)).tolist()):
        cluster.size += count - 1  # Drain counted the first occurrence only
    if handler is not None:
        miner.save_state("parse")
    out = frame.copy()
    out["template_id"] = np.array([c.cluster_id for c in clusters], dtype=np.int64)[line_masked]
    final = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    templates = pa.array([final[c.cluster_id] for c in clusters], pa.large_string())
    out["template"] = pd.array(templates.take(line_masked), dtype="str")  # Arrow's take: no Python per line
    out["masked_id"] = line_masked
    out["tokens"] = _objects([tokens(text, cfg.max_tokens) for text in masked])[line_masked]
    seconds = time.perf_counter() - start
    stats = {
        "lines": len(out),
        "unique_raw": unique_raw,
        "unique_masked": len(masked),
        "templates": len(miner.drain.clusters),
        "parse_s": round(seconds, 3),
        "lines_per_s": round(len(out) / max(seconds, 1e-9), 1),
    }
    return out, stats


def _objects(items: list) -> np.ndarray:
    """A 1-d object array of `items` (lists stay elements, numpy would make a 2-d array of them)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def plain_drain(contents: list[str] | pd.Series, cfg: ParseConfig | None) -> tuple[np.ndarray, float]:
    """Reference: stock drain3 TemplateMiner, one call per line. With `cfg`: our masks and tree
    settings; None: drain3's defaults (TemplateMiner() without a drain3.ini: no masking, depth 4,
    sim_th 0.4). Returns (cluster ids, seconds)."""
    miner = TemplateMiner(config=miner_config(cfg) if cfg else TemplateMinerConfig())
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


BASELINES = {"drain3_same_masks": "stock drain3, our masks and tree settings",
             "drain3_default": "stock drain3 TemplateMiner() defaults: no masks, depth 4, sim_th 0.4"}


def compare_parsers(frame: pd.DataFrame, cfg: ParseConfig, truth: pd.Series | None = None, repeats: int = 1) -> dict:
    """The fast path against both stock-drain3 baselines on the same lines.

    Runs are interleaved after a warm-up and the best of `repeats` counts, so first-call costs
    and load from other processes hit all three alike. Per parser: lines/s; per baseline: the fast
    path's speedup and how far its partition agrees with the baseline's (grouping accuracy, the
    baseline as reference); with `truth` (true template per line), every parser's grouping accuracy.
    """
    parse(frame, cfg)  # warm-up: the fast path whole (it is the cheap one), the baselines on a slice
    for baseline_cfg in (cfg, None):
        plain_drain(frame["content"].head(1000), baseline_cfg)
    runs: dict[str, list[tuple[np.ndarray, float]]] = {"fast": [], **{name: [] for name in BASELINES}}
    for _ in range(repeats):
        start = time.perf_counter()
        parsed, _ = parse(frame, cfg)
        runs["fast"].append((parsed["template_id"].to_numpy(), time.perf_counter() - start))
        runs["drain3_same_masks"].append(plain_drain(frame["content"], cfg))
        runs["drain3_default"].append(plain_drain(frame["content"], None))
    best = {name: min(results, key=lambda r: r[1]) for name, results in runs.items()}
    fast_ids, fast_s = best["fast"]
    out = {"lines": len(frame), "repeats": repeats, "fast": {"lines_per_s": round(len(frame) / fast_s, 1),
                                                             "templates": int(len(np.unique(fast_ids)))}}
    for name, (ids, seconds) in best.items():
        if name != "fast":
            out[name] = {"what": BASELINES[name], "lines_per_s": round(len(frame) / seconds, 1),
                         "speedup": round(seconds / fast_s, 2), "templates": int(len(np.unique(ids))),
                         "agreement": round(grouping_accuracy(ids, fast_ids), 4)}
        if truth is not None:
            out[name]["grouping_accuracy"] = round(grouping_accuracy(truth, ids), 4)
    return out
