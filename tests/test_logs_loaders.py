"""Each loader on real-format lines and on broken lines: counted, reported, never fatal."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from tasks.logs.loaders import load, load_bgl, load_generic, load_hdfs, load_spirit, load_thunderbird

BROKEN = ["", "garbage", "- notanumber 2005.06.03 R02 x y z w v content"]


def test_bgl_real_lines_and_broken(shared_data, tmp_path):
    real = (shared_data / "logs" / "BGL_2k.log").read_text().splitlines()[:200]
    path = tmp_path / "bgl.log"
    path.write_text("\n".join(real[:100] + BROKEN + real[100:]) + "\n")
    loaded = load_bgl(path)
    assert len(loaded.frame) == 200
    assert loaded.malformed == len(BROKEN)
    assert len(loaded.examples) == len(BROKEN)
    structured = pd.read_csv(shared_data / "logs" / "BGL_2k.log_structured.csv", nrows=200)
    assert loaded.frame["content"].tolist() == structured["Content"].tolist()
    assert loaded.frame["label"].tolist() == (structured["Label"] != "-").astype(int).tolist()
    assert loaded.frame["timestamp"].tolist() == structured["Timestamp"].astype(float).tolist()
    assert loaded.frame["node"].tolist() == structured["Node"].tolist()


THUNDERBIRD = [
    "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root",
    "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session opened for user root by (uid=0)",
    "VAPI 1131566467 2005.11.09 tbird-admin1 Nov 9 12:01:07 local@tbird-admin1 postfix/postdrop[10896]: warning: unable to look up public/pickup: No such file or directory",
]


def test_thunderbird_lines_and_broken(tmp_path):
    path = tmp_path / "tbird.log"
    path.write_text("\n".join(THUNDERBIRD[:2] + ["- 1131566461 too short"] + THUNDERBIRD[2:] + ["x abc 2005.11.09 a b c d e f"]) + "\n")
    loaded = load_thunderbird(path)
    assert loaded.frame["label"].tolist() == [0, 0, 1]
    assert loaded.frame["node"].tolist() == ["dn228", "dn228", "tbird-admin1"]
    assert loaded.frame["content"].iloc[0] == "crond(pam_unix)[2915]: session closed for user root"
    assert loaded.malformed == 2


HDFS = [
    "081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
    "081109 203518 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /mnt/hadoop/mapred/system/job_200811092030_0001/job.jar. blk_-1608999687919862906",
    "081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864",
    "081109 204106 329 WARN dfs.DataNode$PacketResponder: PacketResponder 2 for block blk_9999 terminating",
]


def test_hdfs_lines_block_labels_and_broken(tmp_path):
    path, labels = tmp_path / "HDFS.log", tmp_path / "anomaly_label.csv"
    path.write_text("\n".join(HDFS[:2] + ["081109 20351 broken", "not a log line at all"] + HDFS[2:]) + "\n")
    labels.write_text("BlockId,Label\nblk_-1608999687919862906,Normal\nblk_7128370237687728475,Anomaly\n")
    loaded = load_hdfs(path, labels)
    frame = loaded.frame
    assert loaded.malformed == 2
    assert frame["node"].tolist() == ["blk_-1608999687919862906", "blk_-1608999687919862906", "blk_7128370237687728475", "blk_9999"]
    assert frame["label"].iloc[:3].tolist() == [0, 0, 1]
    assert pd.isna(frame["label"].iloc[3])  # block not in the label file
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2008-11-09 20:35:18", tz="UTC").timestamp()


def test_hdfs_label_file_errors(tmp_path):
    path, labels = tmp_path / "HDFS.log", tmp_path / "anomaly_label.csv"
    path.write_text(HDFS[0] + "\n")
    labels.write_text("Block,Label\nblk_1,Normal\n")
    with pytest.raises(ValueError, match="BlockId"):
        load_hdfs(path, labels)
    labels.write_text("BlockId,Label\nblk_1,Maybe\n")
    with pytest.raises(ValueError, match="Normal or Anomaly"):
        load_hdfs(path, labels)


def test_spirit_real_slice_and_broken(shared_data, tmp_path):
    with gzip.open(shared_data / "logs" / "spirit_300k.csv.gz", "rt") as handle:
        lines = [next(handle) for _ in range(301)]
    path = tmp_path / "spirit.csv.gz"
    broken = ['999,-,notatime,some content,2005-01-01 08:00:00\n', '1000,-,1104566400,a,b,c,d,e\n', '1001,-,1104566401,,2005\n']
    with gzip.open(path, "wt") as handle:
        handle.writelines(lines[:150] + broken + lines[150:])
    loaded = load_spirit(path)
    assert len(loaded.frame) == 300
    assert loaded.malformed == 3
    original = pd.read_csv(shared_data / "logs" / "spirit_300k.csv.gz", nrows=300)
    assert loaded.frame["content"].tolist() == original["Content"].tolist()
    assert loaded.frame["label"].sum() == (original["t"] != "-").sum()


def test_generic_csv_parquet_and_errors(tmp_path):
    frame = pd.DataFrame({"timestamp": ["2024-01-01 00:00:00", "2024-01-01 00:00:05", "bad"],
                          "message": ["disk ok", "disk failed", "x"], "label": [0, 1, 0]})
    frame.to_csv(tmp_path / "g.csv", index=False)
    loaded = load_generic(tmp_path / "g.csv")
    assert loaded.malformed == 1 and loaded.frame["label"].tolist() == [0, 1]
    assert loaded.frame["timestamp"].diff().iloc[1] == 5.0
    frame.iloc[:2].assign(timestamp=[1.0, 2.0]).to_parquet(tmp_path / "g.parquet")
    assert load("generic", tmp_path / "g.parquet").frame["content"].tolist() == ["disk ok", "disk failed"]
    frame.drop(columns=["message"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="content"):
        load_generic(tmp_path / "bad.csv")
    (tmp_path / "empty.log").write_text("junk\n")
    with pytest.raises(ValueError, match="no valid log lines"):
        load_bgl(tmp_path / "empty.log")
    with pytest.raises(FileNotFoundError):
        load_bgl(tmp_path / "missing.log")
    with pytest.raises(ValueError, match="unknown log format"):
        load("syslog", tmp_path / "g.csv")


def test_generated_logs_load_as_generic_with_alerts_in_episodes(tmp_path):
    from tasks.logs.synthetic import write_synthetic_logs

    loaded = load("generic", write_synthetic_logs(tmp_path / "synthetic.csv"))
    frame = loaded.frame
    assert len(frame) == 4000 and loaded.malformed == 0
    assert 0.01 < frame["label"].astype(float).mean() < 0.1
    assert frame["timestamp"].is_monotonic_increasing
