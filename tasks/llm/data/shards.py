"""Token shards: the encoded corpus as flat uint16/uint32 arrays on disk, split train/val.

Layout of a shards folder (written whole into a temporary sibling, then swapped in, so a crash
never leaves half a dataset):

    <dir>/meta.json                   dtype, vocab_size, bos_id, tokens/documents/bytes per split
    <dir>/tokenizer.json              the tokenizer that produced the ids
    <dir>/{train,val}/shard_00000.bin raw token ids, every document starts with BOS

A document goes to val when a hash of its text falls below `val_fraction`: the split is
deterministic, independent of corpus order, and duplicates never straddle it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tasks.common.atomic import write_json
from tasks.common.errors import InputError
from tasks.llm.data.corpus import CorpusError
from tasks.llm.data.tokenizer import Tokenizer

SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def is_val(doc: str, val_fraction: float) -> bool:
    digest = hashlib.blake2b(doc.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < val_fraction


class _SplitWriter:
    """Appends token arrays and cuts them into fixed-size shard files."""

    def __init__(self, folder: Path, dtype: np.dtype, shard_tokens: int):
        self.folder, self.dtype, self.shard_tokens = folder, dtype, shard_tokens
        folder.mkdir(parents=True)
        self.pending: list[np.ndarray] = []
        self.pending_len = self.n_tokens = self.n_docs = self.n_bytes = self.n_shards = 0

    def add(self, ids: list[int], n_bytes: int) -> None:
        self.pending.append(np.asarray(ids, dtype=self.dtype))
        self.pending_len += len(ids)
        self.n_tokens += len(ids)
        self.n_docs += 1
        self.n_bytes += n_bytes
        while self.pending_len >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n: int) -> None:
        flat = np.concatenate(self.pending)
        flat[:n].tofile(self.folder / f"shard_{self.n_shards:05d}.bin")
        self.n_shards += 1
        self.pending = [flat[n:]]
        self.pending_len = len(flat) - n

    def close(self) -> None:
        if self.pending_len:
            self._flush(self.pending_len)


def write_shards(docs: Iterable[str], tokenizer: Tokenizer, out_dir: str | Path, val_fraction: float = 0.05,
                 shard_tokens: int = 1 << 24, batch_docs: int = 512) -> dict:
    """Encode `docs` (BOS + ids each) into `out_dir`, replacing what was there; returns meta.json's content."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    os.chmod(tmp, 0o755)
    try:
        dtype = token_dtype(tokenizer.vocab_size)
        writers = {s: _SplitWriter(tmp / s, dtype, shard_tokens) for s in SPLITS}
        encode_s = 0.0
        batch: list[str] = []

        def flush_batch() -> None:
            nonlocal encode_s
            start = time.perf_counter()
            encoded = tokenizer.encode_batch(batch)
            encode_s += time.perf_counter() - start
            for doc, ids in zip(batch, encoded):
                split = "val" if is_val(doc, val_fraction) else "train"
                writers[split].add([tokenizer.bos_id, *ids], len(doc.encode("utf-8")))
            batch.clear()

        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_docs:
                flush_batch()
        if batch:
            flush_batch()
        for w in writers.values():
            w.close()
        empty = [s for s, w in writers.items() if w.n_docs == 0]
        if empty:
            counts = {s: w.n_docs for s, w in writers.items()}
            raise CorpusError(f"the {'/'.join(empty)} split is empty (documents per split: {counts}); "
                              "use a larger corpus, smaller documents or another val_fraction")
        tokenizer.save(tmp / "tokenizer.json")
        meta = _meta(writers, tokenizer, out_dir, dtype, shard_tokens, val_fraction, encode_s)
        write_json(tmp / "meta.json", meta)
        _swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _meta(writers: dict[str, _SplitWriter], tokenizer: Tokenizer, out_dir: Path, dtype: np.dtype,
          shard_tokens: int, val_fraction: float, encode_s: float) -> dict:
    text_tokens = {s: w.n_tokens - w.n_docs for s, w in writers.items()}  # without the BOS tokens
    total_bytes = sum(w.n_bytes for w in writers.values())
    return {
        "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size,
        "bos_id": tokenizer.bos_id,
        "tokenizer": str(out_dir / "tokenizer.json"),
        "shard_tokens": shard_tokens,
        "val_fraction": val_fraction,
        "n_tokens": {s: w.n_tokens for s, w in writers.items()},
        "n_documents": {s: w.n_docs for s, w in writers.items()},
        "n_bytes": {s: w.n_bytes for s, w in writers.items()},
        "n_shards": {s: w.n_shards for s, w in writers.items()},
        "bytes_per_token": {s: w.n_bytes / max(text_tokens[s], 1) for s, w in writers.items()},
        "encode_seconds": encode_s,
        "encode_bytes_per_s": total_bytes / encode_s if encode_s > 0 else 0.0,
        "encode_tokens_per_s": sum(text_tokens.values()) / encode_s if encode_s > 0 else 0.0,
    }


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` by the finished `tmp` folder; the old folder is removed only afterwards."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{time.time_ns()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class TokenShards:
    """Read one split: `tokens` (one flat array), `shards` (one memmap per file), `read(start, n)`."""

    def __init__(self, folder: str | Path, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.folder, self.split = Path(folder).resolve(), split
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: {self.folder} holds no token shards "
                                    "(run `seedflow llm tokenize` first)")
        self.meta = json.loads(meta_path.read_text())
        self.dtype = np.dtype(self.meta["dtype"])
        files = sorted((self.folder / split).glob("shard_*.bin"))
        self.shards = [np.memmap(f, dtype=self.dtype, mode="r") for f in files]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        expected = self.meta["n_tokens"][split]
        if self.offsets[-1] != expected:
            raise InputError(f"{self.folder / split}: shards hold {self.offsets[-1]} tokens, meta.json says {expected}; "
                             "the folder is incomplete: run `seedflow llm tokenize` again")
        self._flat: np.ndarray | None = None

    @property
    def bos_id(self) -> int:
        return self.meta["bos_id"]

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / "tokenizer.json"

    @property
    def tokens(self) -> np.ndarray:
        """The whole split as one array: the memmap itself for one shard, else a concatenated copy."""
        if self._flat is None:
            self._flat = self.shards[0] if len(self.shards) == 1 else np.concatenate(self.shards)
        return self._flat

    def read(self, start: int, n: int) -> np.ndarray:
        """Tokens [start, start+n) across shard boundaries, without loading the rest."""
        if start < 0 or start + n > len(self):
            raise IndexError(f"tokens [{start}, {start + n}) outside the {len(self)} tokens of {self.split}")
        if n == 0:
            return np.empty(0, dtype=self.dtype)
        parts, pos, end = [], start, start + n
        while pos < end:
            i = int(np.searchsorted(self.offsets, pos, side="right")) - 1
            stop = min(end, int(self.offsets[i + 1]))
            parts.append(self.shards[i][pos - self.offsets[i]: stop - self.offsets[i]])
            pos = stop
        return np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0])

    def __len__(self) -> int:
        return int(self.offsets[-1])
