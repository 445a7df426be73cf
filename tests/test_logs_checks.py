"""Inputs the logs pipeline must refuse up front, in one line, before anything is parsed or trained:
one test per class (labels, malformed share, names/files/formats), plus the gaps it skips."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from tasks.logs.config import LogsConfig
from tasks.logs.data import Detection
from tasks.logs.errors import LogsError
from tasks.logs.evaluate import evaluate
from tasks.logs.loaders import load_spirit
from tasks.logs.pipeline import check_inputs, ingest_and_parse, label_gaps
from tasks.logs.report import skipped_row, write_outputs

TBIRD = "{label} {t} 2005.11.09 dn{n} Nov 9 12:01:01 dn{n}/dn{n} crond(pam_unix)[{pid}]: session closed for user root"


def thunderbird(path, lines: int = 200, anomaly_at: int | None = None):
    """A loghub-Thunderbird-format log; every label `-` (normal) unless `anomaly_at` is given."""
    rows = [TBIRD.format(label="VAPI" if i == anomaly_at else "-", t=1131566461 + i, n=i % 7, pid=1000 + i) for i in range(lines)]
    path.write_text("\n".join(rows) + "\n")
    return path


def config(tmp_path, **datasets) -> LogsConfig:
    return LogsConfig(datasets=[{"name": name, **spec} for name, spec in datasets.items()], run=list(datasets),
                      window_sizes=[0], out_dir=str(tmp_path / "out"))


def refusal(cfg: LogsConfig, tmp_path) -> str:
    """check_inputs' message, after checking it is one line, names what to do, and the ingest refuses too."""
    with pytest.raises(LogsError) as check:
        check_inputs(cfg, None)
    message = str(check.value)
    assert "\n" not in message
    return message


def test_datasets_without_anomalies_or_labels_refused_before_parsing(tmp_path):
    # loghub Thunderbird_2k: labelled, but not one anomaly; no incidents file
    cfg = config(tmp_path, tbird={"format": "thunderbird", "path": str(thunderbird(tmp_path / "tbird.log"))})
    message = refusal(cfg, tmp_path)
    assert "'tbird'" in message and "none of its 200 labelled lines is an anomaly" in message and "incidents" in message
    with pytest.raises(LogsError, match="is an anomaly"):  # the flow's own parse step refuses as well
        ingest_and_parse(cfg.dataset("tbird"), cfg, None, tmp_path / "out")
    # HDFS without anomaly_label.csv: no labels at all
    hdfs = tmp_path / "HDFS_2k.log"
    hdfs.write_text("081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-160899 src: /10.250.19.102:54106\n")
    message = refusal(config(tmp_path, hdfs={"format": "hdfs", "path": str(hdfs)}), tmp_path)
    assert "no labels and no incidents file" in message and "anomaly_label.csv" in message
    assert not (tmp_path / "out").exists()  # nothing parsed, nothing written

    # an incidents file gives failure windows: the same anomaly-free log is accepted
    incidents = tmp_path / "incidents.csv"
    incidents.write_text("start,end\n1131566500,1131566510\n")
    check_inputs(config(tmp_path, tbird={"format": "thunderbird", "path": str(tmp_path / "tbird.log"),
                                          "incidents": str(incidents)}), None)
    # and so is a labelled log with one anomaly
    check_inputs(config(tmp_path, tbird={"format": "thunderbird", "path": str(thunderbird(tmp_path / "one.log", anomaly_at=5))}), None)


def test_gaps_in_the_truth_are_skipped_and_said(tmp_path):
    """Anomalies only early: supervised has positives, P/R/F1 on the test part are blank, not 0.0."""
    labels = np.zeros(100, dtype=np.int64)
    labels[10] = 1
    train = np.arange(100) < 80
    assert label_gaps(labels, train) == {"metrics": "P/R/F1 undefined: no labelled anomaly in the test part"}
    assert set(label_gaps(np.zeros(100), train)) == {"supervised", "metrics"}
    assert label_gaps(np.r_[labels[:90], np.ones(10)], train) == {}

    det = Detection("pca", np.zeros(100), np.zeros(100, dtype=np.int8), 0.5, 0.1, 0.1, {})
    row = evaluate(det, labels, train, np.full(100, ""), label_gaps(labels, train)["metrics"])
    assert row["f1"] is None and row["precision"] is None and "test part" in row["note"] and row["fp"] == 0
    window = {"dataset": "tbird", "window_s": 0, "window_share": 0.0}
    rows = [{**window, **row, "info": {}}, skipped_row(window, "supervised", "skipped: no labelled anomaly in the train part")]
    write_outputs(rows, {}, {}, tmp_path, {"hardware": {"cpu": "x"}})
    table = pd.read_csv(tmp_path / "results.csv")
    assert table["f1"].isna().all() and table["note"].str.contains("skipped|undefined").all()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best"] == [] and metrics["f1"] == {} and set(metrics["not_rated"]) == {"tbird/w0/pca", "tbird/w0/supervised"}


def test_malformed_share_over_the_limit_warns_on_the_console(shared_data, tmp_path, capsys):
    real = (shared_data / "logs" / "BGL_2k.log").read_text().splitlines()[:190]
    path = tmp_path / "bgl.log"
    path.write_text("\n".join(real + ["garbage line"] * 10) + "\n")  # 5.0%: at the limit, no warning
    cfg = config(tmp_path, bgl={"format": "bgl", "path": str(path)})
    _, stats = ingest_and_parse(cfg.dataset("bgl"), cfg, None, tmp_path / "out")
    assert stats["malformed"] == 10 and stats["warnings"] == [] and "warning" not in capsys.readouterr().err

    path.write_text("\n".join(real + ["garbage line"] * 20) + "\n")  # 9.5%
    _, stats = ingest_and_parse(cfg.dataset("bgl"), cfg, None, tmp_path / "out")
    err = capsys.readouterr().err
    assert "warning: bgl: 20 of 210 lines (9.5%)" in err and str(path) in err and len(err.strip().splitlines()) == 1
    assert stats["warnings"] == [err.strip().removeprefix("warning: ")] and stats["malformed_share"] == pytest.approx(0.0952, abs=1e-4)
    saved = json.loads((tmp_path / "out" / "parsed" / "bgl_stats.json").read_text())
    assert saved["warnings"] == stats["warnings"]

    cfg.malformed_warn_share = 0.1
    _, stats = ingest_and_parse(cfg.dataset("bgl"), cfg, None, tmp_path / "out")
    assert stats["warnings"] == [] and capsys.readouterr().err == ""


def test_check_inputs_names_files_formats_and_models(shared_data, tmp_path):
    bgl = str(shared_data / "logs" / "BGL_2k.log")
    good = config(tmp_path, bgl={"format": "bgl", "path": bgl})
    check_inputs(good, None)

    assert "['nope']" in refusal(good.model_copy(update={"run": ["bgl", "nope"]}), tmp_path)
    assert "unknown models ['gpt']" in refusal(good.model_copy(update={"models": ["pull", "gpt"]}), tmp_path)
    message = refusal(config(tmp_path, gone={"format": "bgl", "path": str(tmp_path / "missing.log")}), tmp_path)
    assert "'gone'" in message and "missing.log" in message and "is not a file" in message
    message = refusal(config(tmp_path, bgl={"format": "bgl", "path": bgl, "incidents": str(tmp_path / "none.csv")}), tmp_path)
    assert "incidents" in message and "none.csv" in message

    # a truncated .gz: one line naming the file, from the check and from the loader alike
    whole = (shared_data / "logs" / "spirit_300k.csv.gz").read_bytes()
    cut = tmp_path / "spirit_cut.csv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    message = refusal(config(tmp_path, spirit={"format": "spirit", "path": str(cut)}), tmp_path)
    assert "spirit_cut.csv.gz is truncated or corrupt" in message and "EOFError" in message
    with pytest.raises(LogsError, match="truncated or corrupt"):
        load_spirit(cut)

    # the declared format does not fit the file
    spirit_slice = tmp_path / "spirit.csv"
    with gzip.open(shared_data / "logs" / "spirit_300k.csv.gz", "rt") as handle:
        spirit_slice.write_text("".join(next(handle) for _ in range(50)))
    assert "no valid log lines" in refusal(config(tmp_path, s={"format": "bgl", "path": str(spirit_slice)}), tmp_path)
    assert "`t` column" in refusal(config(tmp_path, b={"format": "spirit", "path": bgl}), tmp_path)
    bad_incidents = tmp_path / "bad_incidents.csv"
    bad_incidents.write_text("begin,end\n1,2\n")
    message = refusal(config(tmp_path, bgl={"format": "bgl", "path": bgl, "incidents": str(bad_incidents)}), tmp_path)
    assert "start,end" in message
