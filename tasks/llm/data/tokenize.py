"""The tokenize stage: resolve the corpus, train the tokenizer, write token shards, report.

Corpus entries are files or folders; relative ones resolve against the data dir
(../shared/datasets), then the project root. The entry `generated` is the project's own
corpus; it stands in automatically only when no data dir exists at all, so the pipeline runs
on a bare machine. An entry found nowhere is an error, never a silent fallback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from tasks.common.atomic import write_json
from tasks.common.paths import data_dir as find_data_dir
from tasks.common.paths import project_root
from tasks.llm.config import TokenizerConfig
from tasks.llm.data.corpus import (CorpusError, chunk_text, corpus_files, download_fineweb_edu, generate_corpus,
                              read_documents)
from tasks.llm.data.shards import write_shards
from tasks.llm.data.tokenizer import Tokenizer

GENERATED = "generated"


def resolve_corpus(cfg: TokenizerConfig, data_dir: str | None = None) -> list[str]:
    """Absolute corpus paths (plus possibly `generated`), downloading FineWeb-Edu shards if asked."""
    base = find_data_dir(data_dir)
    entries: list[str] = []
    for entry in cfg.corpus:
        local = project_root() / entry
        if entry == GENERATED or Path(entry).is_absolute():
            entries.append(entry)
        elif base is not None and (base / entry).exists():
            entries.append(str(base / entry))
        elif local.exists():
            entries.append(str(local))
        elif base is None:
            print(f"tokenize: no data dir, so the generated corpus stands in for {entry}")
            entries.append(GENERATED)
        else:
            raise CorpusError(f"corpus entry {entry!r} is neither in the data dir {base} nor in {project_root()}")
    if cfg.download_shards:
        folder = project_root() / cfg.download_dir
        entries.extend(str(p) for p in download_fineweb_edu(folder, cfg.download_shards, timeout=cfg.download_timeout_s))
    if not entries:
        raise CorpusError("llm.tokenizer.corpus is empty and no download was asked for")
    return list(dict.fromkeys(entries))


def documents(entries: list[str], cfg: TokenizerConfig) -> Iterator[str]:
    files = [e for e in entries if e != GENERATED]
    if files:
        corpus_files(files)  # fail on a bad path before any work starts
        yield from read_documents(files, cfg.text_field, cfg.doc_chars)
    if GENERATED in entries:
        yield from chunk_text(generate_corpus(cfg.generated_chars, cfg.seed), cfg.doc_chars)


def _limited(docs: Iterator[str], max_chars: int) -> Iterator[str]:
    """The first documents up to `max_chars` characters in total (0 = all)."""
    total = 0
    for doc in docs:
        if max_chars and total >= max_chars:
            return
        total += len(doc)
        yield doc


def run_tokenize(cfg: TokenizerConfig, data_dir: str | None = None) -> dict:
    """Train the tokenizer on (up to max_chars of) the corpus, encode it all into shards, write metrics."""
    entries = resolve_corpus(cfg, data_dir)
    out_dir = (project_root() / cfg.out_dir).resolve()
    start = time.perf_counter()
    tokenizer = Tokenizer.train(_limited(documents(entries, cfg), cfg.max_chars), cfg.vocab_size, cfg.digits)
    train_s = time.perf_counter() - start
    meta = write_shards(_limited(documents(entries, cfg), cfg.max_chars), tokenizer, out_dir,
                        cfg.val_fraction, cfg.shard_tokens)
    metrics = {
        "vocab_size": tokenizer.vocab_size,
        "train_tokens": meta["n_tokens"]["train"],
        "val_tokens": meta["n_tokens"]["val"],
        "documents": sum(meta["n_documents"].values()),
        "bytes_per_token": meta["bytes_per_token"]["val"],
        "encode_mb_per_s": meta["encode_bytes_per_s"] / 1e6,
        "encode_tokens_per_s": meta["encode_tokens_per_s"],
        "tokenizer_train_s": train_s,
    }
    metrics_path = write_json(out_dir.parent / "tokenize_metrics.json", metrics)
    return {"metrics": metrics, "meta": meta, "corpus": entries, "out_dir": str(out_dir),
            "tokenizer": meta["tokenizer"], "metrics_path": str(metrics_path)}



def log_to_mlflow(result: dict, cfg: TokenizerConfig) -> str:
    """One run in the `llm-tokenize` experiment: parameters, compression and speed, the tokenizer file."""
    import mlflow

    from tasks.common.precision import hardware_tags
    from tasks.common.tracking import use_experiment

    use_experiment(cfg.experiment)
    with mlflow.start_run(run_name=f"tokenize-v{cfg.vocab_size}", tags=hardware_tags()) as run:
        mlflow.log_params({"vocab_size": cfg.vocab_size, "digits": cfg.digits, "val_fraction": cfg.val_fraction,
                           "doc_chars": cfg.doc_chars, "max_chars": cfg.max_chars,
                           "corpus": ",".join(Path(e).name for e in result["corpus"])[:500]})
        mlflow.log_metrics(result["metrics"])
        mlflow.log_artifact(result["tokenizer"])
        mlflow.log_artifact(str(Path(result["out_dir"]) / "meta.json"))
        return run.info.run_id
