"""Pretraining corpora: documents from text, JSONL and Parquet files; a fail-fast downloader.

Readers yield documents (str). A plain-text file is one long document, so it is cut into
chunks of about `doc_chars` characters at blank lines: each chunk becomes a document with its
own BOS, and the train/val split can be made per document. JSONL rows use their `text` field
and Parquet shards their `text` column, the layout of public corpora such as FineWeb-Edu.
"""

from __future__ import annotations

import codecs
import gzip
import json
import random
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path

from tasks.common.atomic import atomic_path
from tasks.common.errors import InputError

TEXT_SUFFIXES = (".txt", ".md", ".text")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
PARQUET_SUFFIXES = (".parquet",)
SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES

# Public FineWeb-Edu shards re-packed as ~100 MB parquet files with a `text` column (nanochat's source).
FINEWEB_EDU_URL = "https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main/shard_{index:05d}.parquet"


class CorpusError(InputError):
    """A corpus that is missing, malformed or empty."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), path.suffix.lower())


def corpus_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (their readable files, sorted); every path must exist."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise CorpusError(f"corpus path {path} does not exist")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in SUFFIXES)
            if not found:
                raise CorpusError(f"corpus folder {path} holds no {'/'.join(SUFFIXES)} files")
            files.extend(found)
        elif _suffix(path) in SUFFIXES:
            files.append(path)
        else:
            raise CorpusError(f"corpus file {path} has an unsupported type; use one of {', '.join(SUFFIXES)}")
    if not files:
        raise CorpusError("no corpus paths given")
    return files


def check_corpus(paths: Iterable[str | Path], text_field: str = "text") -> list[Path]:
    """A cheap first pass before any server starts: the files exist, plain text is UTF-8 throughout,
    and the corpus holds some text. Reading the documents later would find the same faults, but only
    after Prefect and Ray had started."""
    files = corpus_files(paths)
    has_text = False
    for path in files:
        suffix = _suffix(path)
        if suffix in TEXT_SUFFIXES:
            has_text = _scan_text(path) or has_text
        elif not has_text:  # JSONL / Parquet: read up to the first non-blank document
            docs = _read_jsonl(path, text_field) if suffix in JSONL_SUFFIXES else _read_parquet(path, text_field)
            has_text = any(doc.strip() for doc in docs)
    if not has_text:
        raise CorpusError(f"corpus {', '.join(str(p) for p in files)} holds no text (empty or blank); "
                          "add text or choose other files with --corpus")
    return files


def _scan_text(path: Path) -> bool:
    """True if the file holds non-blank text; a byte that is not UTF-8 is an error naming its offset."""
    decoder, offset, has_text = codecs.getincrementaldecoder("utf-8")(), 0, False
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise CorpusError(f"corpus file {path} is not UTF-8 text (byte {offset - pending + exc.start} "
                                  f"cannot be decoded); convert it to UTF-8 or leave it out of --corpus") from None
            has_text = has_text or bool(text.strip())
            if not chunk:
                return has_text
            offset += len(chunk)


def chunk_text(text: str, doc_chars: int) -> Iterator[str]:
    """Cut a long text at blank lines into pieces of about `doc_chars` characters (never splits a paragraph)."""
    piece: list[str] = []
    size = 0
    for para in text.split("\n\n"):
        piece.append(para)
        size += len(para) + 2
        if size >= doc_chars:
            yield "\n\n".join(piece)
            piece, size = [], 0
    if piece and "".join(piece).strip():
        yield "\n\n".join(piece)


def _read_text(path: Path, doc_chars: int) -> Iterator[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path} is not UTF-8 text: {exc}") from exc
    yield from chunk_text(text, doc_chars)


def _read_jsonl(path: Path, field: str) -> Iterator[str]:
    try:
        yield from _jsonl_rows(path, field)
    except (EOFError, OSError, UnicodeDecodeError) as exc:  # a truncated or corrupt .gz, a non-UTF-8 file
        raise CorpusError(f"cannot read {path}: {type(exc).__name__}: {exc}; check that the file is complete") from exc


def _jsonl_rows(path: Path, field: str) -> Iterator[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{lineno} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict) or field not in row:
                raise CorpusError(f"{path}:{lineno} has no {field!r} field")
            if not isinstance(row[field], str):
                raise CorpusError(f"{path}:{lineno} field {field!r} is {type(row[field]).__name__}, not text")
            yield row[field]


def _read_parquet(path: Path, field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise CorpusError(f"{path} is not a readable Parquet file: {exc}") from exc
    if field not in pf.schema_arrow.names:
        raise CorpusError(f"{path} has no {field!r} column (columns: {', '.join(pf.schema_arrow.names)})")
    row = 0
    for group in range(pf.num_row_groups):
        for value in pf.read_row_group(group, columns=[field]).column(0).to_pylist():
            if not isinstance(value, str):
                raise CorpusError(f"{path} row {row}: column {field!r} is {value!r}, not text")
            row += 1
            yield value


def read_documents(paths: Iterable[str | Path], text_field: str = "text", doc_chars: int = 4000) -> Iterator[str]:
    """Every non-blank document of the corpus, file by file; raises CorpusError if there is none."""
    paths, count = list(paths), 0
    for path in corpus_files(paths):
        suffix = _suffix(path)
        if suffix in TEXT_SUFFIXES:
            docs = _read_text(path, doc_chars)
        elif suffix in JSONL_SUFFIXES:
            docs = _read_jsonl(path, text_field)
        else:
            docs = _read_parquet(path, text_field)
        for doc in docs:
            if doc.strip():
                count += 1
                yield doc
    if count == 0:
        raise CorpusError(f"corpus {[str(p) for p in paths]} holds no text")


def fetch(url: str, dest: str | Path, timeout: float = 10.0) -> Path:
    """Download `url` to `dest` atomically; offline or unreachable fails within `timeout` seconds."""
    dest = Path(dest)
    try:
        _resolve(url, timeout)
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(dest) as tmp:
            with open(tmp, "wb") as fh:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
        raise CorpusError(
            f"cannot download {url} ({exc}); offline? Put the file at {dest} yourself and run again"
        ) from exc
    return dest


def _resolve(url: str, timeout: float) -> None:
    """Name lookup is not covered by urlopen's timeout and can hang offline: bound it too."""
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        raise CorpusError(f"{url} is not a URL")
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(socket.getaddrinfo, host, None).result(timeout=timeout)
    except FuturesTimeout:
        raise TimeoutError(f"looking up {host} took over {timeout:.0f}s") from None
    finally:
        pool.shutdown(wait=False)


def download_fineweb_edu(dest_dir: str | Path, num_shards: int = 1, url: str = FINEWEB_EDU_URL,
                         timeout: float = 10.0) -> list[Path]:
    """Fetch the first `num_shards` parquet shards into `dest_dir` (shards already there are kept)."""
    out = []
    for index in range(num_shards):
        target = Path(dest_dir) / Path(url.format(index=index)).name
        out.append(target if target.is_file() else fetch(url.format(index=index), target, timeout))
    return out


# A tiny grammar for the fallback corpus (used only when no real text is available).
_SUBJECTS = ["the king", "a young queen", "the old sailor", "my brother", "the merchant", "a quiet child",
             "the soldier", "our neighbour", "the farmer", "a clever fox", "the captain", "her sister"]
_VERBS = ["sees", "loves", "fears", "finds", "follows", "greets", "remembers", "answers", "helps", "watches"]
_OBJECTS = ["the river", "a golden ring", "the tall tower", "his friend", "the dark forest", "a letter",
            "the bright moon", "an honest man", "the small boat", "the city gate", "a silver cup"]
_TAILS = ["at dawn", "in silence", "with great joy", "before the storm", "after supper", "by the sea", ""]


def generate_corpus(n_chars: int = 400_000, seed: int = 0) -> str:
    """Deterministic English-like text with paragraphs and some arithmetic, for machines without data."""
    rng = random.Random(seed)
    paras, size = [], 0
    while size < n_chars:
        sentences = []
        for _ in range(rng.randint(2, 6)):
            if rng.random() < 0.15:
                a, b = rng.randint(1, 999), rng.randint(1, 999)
                sentences.append(f"{a} and {b} make {a + b}.")
            else:
                words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_TAILS)]
                sentence = " ".join(w for w in words if w)
                sentences.append(sentence[0].upper() + sentence[1:] + rng.choice([".", ".", "!", "?"]))
        para = " ".join(sentences)
        paras.append(para)
        size += len(para) + 2
    return "\n\n".join(paras) + "\n"
