"""Masking, token view, drain3 fast path vs plain drain3, grouping accuracy, persisted state."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.logs.config import ParseConfig
from tasks.logs.loaders import load_bgl
from tasks.logs.parsing import Masker, grouping_accuracy, parse, plain_drain, tokens


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
