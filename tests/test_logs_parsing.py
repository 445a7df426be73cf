"""Masking, token view, drain3 fast path vs plain drain3 (same masks, and drain3's defaults),
grouping accuracy, persisted state."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from drain3 import TemplateMiner
from drain3.drain import Drain

from tasks.logs.config import ParseConfig
from tasks.logs.loaders import load_bgl, load_spirit
from tasks.logs.parsing import (AtomicFilePersistence, FastDrain, Masker, Miner, compare_parsers, grouping_accuracy,
                                mask_lines, miner_config, parse, plain_drain, tokens)


def test_masking_and_tokens():
    masked = Masker()("Connection from 10.1.2.3:8080 at 0x1f3a opened /var/log/messages.1 after 42 tries, R02-M1")
    assert masked == "Connection from <IP> at <HEX> opened <PATH> after <NUM> tries, R02-M1"
    assert tokens(masked, 32) == ["connection", "from", "<ip>", "at", "<hex>", "opened", "<path>", "after", "<num>", "tries", "r", "m"]
    assert tokens(masked, 3) == ["connection", "from", "<ip>"]


def test_grouping_accuracy_definition():
    truth = ["a", "a", "b", "b", "c"]
    assert grouping_accuracy(truth, [1, 1, 2, 2, 3]) == 1.0
    assert grouping_accuracy(truth, [1, 1, 2, 3, 4]) == pytest.approx(3 / 5)  # b split: its 2 lines are wrong
    assert grouping_accuracy(truth, [1, 1, 1, 1, 2]) == pytest.approx(1 / 5)  # a and b merged
    with pytest.raises(ValueError):
        grouping_accuracy([], [])


def test_bgl_fast_path_matches_plain_drain3_and_ground_truth(shared_data):
    frame = load_bgl(shared_data / "logs" / "BGL_2k.log").frame
    truth = pd.read_csv(shared_data / "logs" / "BGL_2k.log_structured.csv")["EventId"]
    cfg = ParseConfig()
    parsed, stats = parse(frame, cfg)
    plain_ids, _ = plain_drain(frame["content"], cfg)
    assert grouping_accuracy(plain_ids, parsed["template_id"]) == 1.0  # same partition as stock drain3
    assert grouping_accuracy(truth, parsed["template_id"]) >= 0.98
    assert stats["unique_masked"] < stats["unique_raw"] < stats["lines"]
    assert set(parsed.columns) >= {"template_id", "template", "tokens", "label", "node", "timestamp"}
    row = parsed.iloc[4]  # "63543 double-hummer alignment exceptions"
    assert row["template"] in ("<NUM> double-hummer alignment exceptions", "<*> double-hummer alignment exceptions")
    assert row["tokens"] == ["<num>", "double", "hummer", "alignment", "exceptions"]


def test_persisted_state_continues_clusters(shared_data, tmp_path):
    frame = load_bgl(shared_data / "logs" / "BGL_2k.log").frame
    state = tmp_path / "miner.drain3"
    first, _ = parse(frame.iloc[:1000], ParseConfig(), state)
    assert state.is_file()
    second, _ = parse(frame.iloc[:1000], ParseConfig(), state)  # resumes: same lines, same clusters
    assert (first["template_id"].to_numpy() == second["template_id"].to_numpy()).all()
    fresh, _ = parse(frame.iloc[1000:], ParseConfig())
    resumed, _ = parse(frame.iloc[1000:], ParseConfig(), state)
    # a fresh miner numbers clusters from 1; the resumed one keeps the first half's numbering
    assert resumed["template_id"].max() >= first["template_id"].max()
    assert grouping_accuracy(fresh["template_id"], resumed["template_id"]) > 0.9
    with pytest.raises(ValueError, match="empty"):
        parse(frame.iloc[:0], ParseConfig())


_B, _E = r"((?<=[^A-Za-z0-9])|^)", r"((?=[^A-Za-z0-9])|$)"


def test_fast_path_pieces_make_stock_drain3_choices(shared_data):
    """Word-at-a-time masking = masking whole lines; FastDrain = drain3's Drain, cluster by cluster
    (Spirit slice, plus lines holding drain3's own `<*>` and whitespace runs)."""
    contents = load_spirit(shared_data / "logs" / "spirit_300k.csv.gz", max_lines=20_000).frame["content"]
    odd = pd.Series(["job <*> done  in\t5 ms", "job 7 done in 9 ms", "  ", "job <*> done in <*> ms", "x"])
    contents = pd.concat([odd, contents, odd], ignore_index=True)
    masker = Masker()
    line_masked, masked, unique_raw = mask_lines(contents, masker)
    by_line = pd.Series([" ".join(masker(text).split()) for text in contents])
    assert (by_line == pd.Series(masked)[line_masked].to_numpy()).all() and len(masked) == by_line.nunique()
    assert unique_raw == contents.nunique()
    tricky = ["/a/b", "x/a/b", ".//a/b", "0x1f,", "v1.2", "1.2.3.4:80/x", "-5", "+5.5e3", "deadbeef1", ""]
    assert masker.words(tricky) == [masker(word) for word in tricky] == [
        "<PATH>", "x/a/b", "./<PATH>", "<HEX>,", "v1.<NUM>", "<IP>/x", "<NUM>", "<NUM>.5e3", "<HEX>", ""]
    # the masks, rewritten to scan faster, mask exactly as their first (drain3-example style) form
    first_form = [re.compile(p) for p in (_B + r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(:\d+)?" + _E, r"(?<![\w.])(/[\w.\-#]+){2,}/?",
                                          _B + r"(0x[a-fA-F0-9]+|[a-fA-F0-9]{8,})" + _E, _B + r"([\-+]?\d+(\.\d+)?)" + _E)]
    for text in [*tricky, *contents]:
        expected = text
        for regex, name in zip(first_form, ("IP", "PATH", "HEX", "NUM")):
            expected = regex.sub(f"<{name}>", expected)
        assert masker(text) == expected

    stock, fast = Drain(depth=3, sim_th=0.7), FastDrain(depth=3, sim_th=0.7)
    stock_ids = [stock.add_log_message(text)[0].cluster_id for text in masked]
    assert [fast.add_log_message(text)[0].cluster_id for text in masked] == stock_ids
    assert [c.log_template_tokens for c in fast.clusters] == [c.log_template_tokens for c in stock.clusters]


def test_both_drain3_baselines_on_bgl(shared_data):
    """The bench's comparison: equal partition to drain3 with the same masks, better grouping
    accuracy than drain3's defaults (no masks), each with its lines/s."""
    frame = load_bgl(shared_data / "logs" / "BGL_2k.log").frame
    truth = pd.read_csv(shared_data / "logs" / "BGL_2k.log_structured.csv")["EventId"]
    out = compare_parsers(frame, ParseConfig(), truth)
    assert out["lines"] == 2000 and out["fast"]["grouping_accuracy"] >= 0.98
    assert out["drain3_same_masks"]["agreement"] == 1.0
    assert out["drain3_same_masks"]["grouping_accuracy"] == out["fast"]["grouping_accuracy"]
    assert out["drain3_default"]["grouping_accuracy"] < out["fast"]["grouping_accuracy"]
    assert out["drain3_default"]["agreement"] < 1.0  # a different partition: unmasked numbers split groups
    assert all(out[name]["lines_per_s"] > 0 and out[name]["speedup"] > 0 for name in ("drain3_same_masks", "drain3_default"))
    default_ids, _ = plain_drain(frame["content"], None)
    assert grouping_accuracy(truth, default_ids) == out["drain3_default"]["grouping_accuracy"]


def test_state_of_stock_drain3_resumes_on_the_fast_path(shared_data, tmp_path):
    frame = load_bgl(shared_data / "logs" / "BGL_2k.log").frame
    state = tmp_path / "stock.drain3"
    stock = TemplateMiner(persistence_handler=AtomicFilePersistence(state), config=miner_config(ParseConfig(), masking=False))
    for text in mask_lines(frame["content"].iloc[:1000], Masker())[1]:
        stock.drain.add_log_message(text)
    stock.save_state("test")
    assert type(stock.drain) is Drain
    resumed = Miner(persistence_handler=AtomicFilePersistence(state), config=miner_config(ParseConfig(), masking=False))
    assert type(resumed.drain) is FastDrain and len(resumed.drain.clusters) == len(stock.drain.clusters)
    first, _ = parse(frame.iloc[:1000], ParseConfig(), state)
    assert first["template_id"].max() <= len(stock.drain.clusters)  # the same lines fall into the saved clusters
