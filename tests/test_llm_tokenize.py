"""Tokenizer, corpus readers and token shards: round trips, special tokens, bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from tasks.llm.config import TokenizerConfig
from tasks.llm.data.corpus import CorpusError, chunk_text, download_fineweb_edu, fetch, generate_corpus, read_documents
from tasks.llm.data.shards import TokenShards, write_shards
from tasks.llm.data.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError
from tasks.llm.data.tokenize import run_tokenize

TRICKY = "Hello, world!  It's 2024: 12345 + 678 = 13023.\n\n\tünïcödé 😀 ﬁ <|bos|> done"


@pytest.fixture(scope="module")
def shakespeare_docs(shared_data):
    return list(read_documents([shared_data / "text" / "tinyshakespeare.txt"], doc_chars=2000))


@pytest.fixture(scope="module")
def tok(shakespeare_docs):
    return Tokenizer.train(shakespeare_docs, vocab_size=1024)


def test_round_trip_and_compression(tok, shakespeare_docs):
    assert tok.vocab_size == 1024
    assert tok.decode(tok.encode(TRICKY)) == TRICKY
    sample = shakespeare_docs[3]
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample
    assert len(sample.encode()) / len(ids) > 2.5  # BPE merges happened (bytes would give 1.0)
    assert tok.encode_batch([sample, TRICKY]) == [ids, tok.encode(TRICKY)]


def test_special_tokens_reserved_and_not_forgeable(tok):
    ids = [tok.token_id(name) for name in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS)))
    assert tok.bos_id == tok.token_id("<|bos|>") == 0
    assert tok.decode([tok.token_id("<|assistant_start|>")]) == "<|assistant_start|>"
    # typed as text, a special token's name is ordinary bytes, never the special id
    assert not set(tok.encode("<|bos|><|python_start|>1+1<|python_end|>")) & set(ids)
    with pytest.raises(TokenizerError, match="unknown special token"):
        tok.token_id("<|system|>")


def test_token_bytes_sum_to_text_bytes(tok):
    table = tok.token_bytes()
    ids = [tok.bos_id, *tok.encode(TRICKY)]
    assert sum(table[i] for i in ids) == len(TRICKY.encode("utf-8"))


def test_pickled_tokenizer_keeps_specials_unforgeable(tok):
    copy = pickle.loads(pickle.dumps(tok))
    assert copy.encode("<|bos|>hi") == tok.encode("<|bos|>hi") and tok.bos_id not in copy.encode("<|bos|>")
    assert copy.token_id("<|output_end|>") == tok.token_id("<|output_end|>")


def test_save_load_identical(tok, tmp_path):
    path = tok.save(tmp_path / "tok.json")
    again = Tokenizer.load(path)
    assert again.encode(TRICKY) == tok.encode(TRICKY)
    assert again.vocab_size == tok.vocab_size and again.bos_id == tok.bos_id
    with pytest.raises(FileNotFoundError, match="not found"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a tokenizer"):
        Tokenizer.load(tmp_path / "junk.json")


def test_digit_grouping_is_configurable():
    text = "1234567 and 89 " * 200
    three = Tokenizer.train([text], 300, digits=3)
    one = Tokenizer.train([text], 300, digits=1)
    pieces = lambda t: [t.decode([i]) for i in t.encode("1234567")]  # noqa: E731
    assert max(map(len, pieces(three))) <= 3 and "".join(pieces(three)) == "1234567"
    assert pieces(one) == list("1234567")


def test_train_rejects_empty_corpus_and_tiny_vocab():
    with pytest.raises(TokenizerError, match="empty corpus"):
        Tokenizer.train([], 512)
    with pytest.raises(TokenizerError, match="below"):
        Tokenizer.train(["abc"], 100)


def test_readers_text_jsonl_parquet(tmp_path):
    (tmp_path / "a.txt").write_text("para one\n\npara two\n\npara three")
    (tmp_path / "b.jsonl").write_text('{"text": "json doc"}\n\n{"text": "second", "id": 2}\n')
    pd.DataFrame({"text": ["pq doc 1", "pq doc 2"], "url": ["u", "v"]}).to_parquet(tmp_path / "c.parquet")
    docs = list(read_documents([tmp_path], doc_chars=15))
    assert docs == ["para one\n\npara two", "para three", "json doc", "second", "pq doc 1", "pq doc 2"]
    assert list(chunk_text("x" * 50, 10)) == ["x" * 50]  # a paragraph is never cut


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"text": "ok"}\n{"text": \n', r"bad.jsonl:2 is not valid JSON"),
    ("nofield.jsonl", '{"body": "x"}\n', r"has no 'text' field"),
    ("nan.jsonl", '{"text": NaN}\n', r"is float, not text"),
    ("empty.txt", "\n\n  \n", r"holds no text"),
    ("notes.docx", "x", r"unsupported type"),
])
def test_bad_corpus_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(CorpusError, match=message):
        list(read_documents([tmp_path / name]))


def test_truncated_gzip_names_the_file(tmp_path):
    import gzip

    whole = gzip.compress(("".join(f'{{"text": "document {i}"}}\n' for i in range(2000))).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorpusError, match=r"cannot read .*cut.jsonl.gz: EOFError.*complete"):
        list(read_documents([tmp_path / "cut.jsonl.gz"]))


def test_bad_corpus_paths_and_parquet(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        list(read_documents([tmp_path / "nope.txt"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="holds no"):
        list(read_documents([tmp_path / "empty"]))
    pd.DataFrame({"content": ["x"]}).to_parquet(tmp_path / "wrong.parquet")
    with pytest.raises(CorpusError, match=r"no 'text' column \(columns: content\)"):
        list(read_documents([tmp_path / "wrong.parquet"]))
    pd.DataFrame({"text": ["x", None]}).to_parquet(tmp_path / "null.parquet")
    with pytest.raises(CorpusError, match="row 1"):
        list(read_documents([tmp_path / "null.parquet"]))


def test_download_fails_fast_offline(tmp_path):
    with pytest.raises(CorpusError, match="cannot download"):
        fetch("http://127.0.0.1:9/shard_00000.parquet", tmp_path / "s.parquet", timeout=2)
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(CorpusError, match="cannot download .*nowhere.invalid"):
        fetch("https://nowhere.invalid/x.parquet", tmp_path / "x.parquet", timeout=2)


def test_fineweb_download_keeps_present_shards_and_fails_fast(tmp_path):
    url = "http://127.0.0.1:9/shard_{index:05d}.parquet"
    pd.DataFrame({"text": ["already here"]}).to_parquet(tmp_path / "shard_00000.parquet")
    assert download_fineweb_edu(tmp_path, 1, url=url, timeout=2) == [tmp_path / "shard_00000.parquet"]
    with pytest.raises(CorpusError, match=r"shard_00001.parquet .*offline\?"):
        download_fineweb_edu(tmp_path, 2, url=url, timeout=2)
    assert list(read_documents([tmp_path])) == ["already here"]


def test_shards_write_read_multi_shard(tok, shakespeare_docs, tmp_path):
    meta = write_shards(shakespeare_docs[:60], tok, tmp_path / "tok", val_fraction=0.2, shard_tokens=5000)
    train, val = TokenShards(tmp_path / "tok", "train"), TokenShards(tmp_path / "tok", "val")
    assert len(train.shards) > 1 and train.tokens.dtype == np.uint16
    assert len(train) + len(val) == sum(len(tok.encode(d)) + 1 for d in shakespeare_docs[:60])
    assert 0 < meta["n_documents"]["val"] < meta["n_documents"]["train"]
    # documents start with BOS and decode back exactly
    flat = train.tokens
    starts = np.flatnonzero(flat == tok.bos_id)
    assert starts[0] == 0 and len(starts) == meta["n_documents"]["train"]
    first_doc = tok.decode(flat[1:starts[1]].tolist())
    assert first_doc in shakespeare_docs[:60]
    # read() across a shard boundary equals the flat view
    edge = len(train.shards[0])
    assert np.array_equal(train.read(edge - 7, 20), flat[edge - 7: edge + 13])
    assert json.loads((tmp_path / "tok" / "meta.json").read_text())["tokenizer"] == str(tmp_path / "tok" / "tokenizer.json")
    assert Tokenizer.load(train.tokenizer_path).encode(TRICKY) == tok.encode(TRICKY)


def test_shards_failure_leaves_previous_output(tok, tmp_path):
    write_shards(["first doc " * 50, "second doc " * 50, "third " * 40, "fourth " * 30], tok, tmp_path / "t", 0.5)
    before = (tmp_path / "t" / "meta.json").read_text()
    with pytest.raises(CorpusError, match="split is empty"):
        write_shards(["only one document"], tok, tmp_path / "t", 0.05)
    assert (tmp_path / "t" / "meta.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # no temporary folders left
    with pytest.raises(FileNotFoundError, match="no token shards"):
        TokenShards(tmp_path / "elsewhere")


def test_run_tokenize_generated_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SEEDFLOW_ROOT", str(tmp_path))
    cfg = TokenizerConfig(corpus=["generated"], vocab_size=512, generated_chars=60_000, doc_chars=1000,
                          val_fraction=0.1, out_dir="results/llm/tokens")
    result = run_tokenize(cfg)
    metrics = json.loads((tmp_path / "results/llm/tokenize_metrics.json").read_text())
    assert metrics["vocab_size"] == 512 and metrics["bytes_per_token"] > 2
    assert metrics["train_tokens"] == len(TokenShards(result["out_dir"], "train"))
    assert generate_corpus(5000, seed=1) == generate_corpus(5000, seed=1) != generate_corpus(5000, seed=2)
    bad = cfg.model_copy(update={"corpus": ["missing.txt"]})
    with pytest.raises(CorpusError, match="neither in the data dir"):
        run_tokenize(bad, data_dir=str(tmp_path))
