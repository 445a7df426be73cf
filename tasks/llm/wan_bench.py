"""`seedflow bench diloco-wan`: DDP, DiLoCo and int8 DiLoCo between two sites over emulated links.

Every run trains the same small GPT on the same tinyshakespeare bytes (or the generated corpus
without the data folder), from the same seed, for the same tokens: two sites of one worker,
each link at the bandwidth under test with 50 ms latency. DDP averages gradients through the hub
every step; DiLoCo syncs every H steps (at least 20 outer rounds), int8 DiLoCo with error
feedback. The fault entry kills -9 one site's worker at half of a DiLoCo run of `fault_sites`
sites and compares it with the same run without the fault.
`wall_s` is the training's wall time, first round to last (comm included); `run_wall_s` adds the
one-off start of the workers and the final evaluation and save. `link_floor_s` is what the bytes
and transfers a site moved must take on its link; `paced` says every site's measured comm time
reached it.
"""

from __future__ import annotations

import tempfile

import numpy as np

from tasks.common.errors import InputError
from tasks.llm.bench import EXPERIMENT, shakespeare_bytes
from tasks.llm.config import PretrainConfig
from tasks.llm.data import TokenStreamSource
from tasks.llm.train import run_training


def byte_source(data_dir: str | None, batch_size: int, seq_len: int) -> TokenStreamSource:
    try:
        return shakespeare_bytes(data_dir, batch_size, seq_len)
    except FileNotFoundError:
        from tasks.llm.datasets.synthetic import generate_corpus

        arr = np.frombuffer(generate_corpus(1_000_000).encode(), dtype=np.uint8).astype(np.uint16)
        cut = int(len(arr) * 0.95)
        return TokenStreamSource(batch_size, seq_len, arrays={"train": arr[:cut], "val": arr[cut:]},
                                 byte_lengths=np.ones(256, dtype=np.int64))


def link_floor(site: dict, mbps: float, latency_ms: float) -> float:
    """The least time a site's transfers may take on its link: bits / bandwidth + one latency each."""
    return 8 * (site["bytes_sent"] + site["bytes_received"]) / (mbps * 1e6) + site["transfers"] * latency_ms / 1e3


def run(data_dir: str | None, bandwidths: tuple[float, ...] = (1000.0, 100.0, 10.0), latency_ms: float = 50.0,
        rounds: int = 20, inner_steps: int = 30, depth: int = 1, batch_size: int = 4, seq_len: int = 64,
        outer_lr: float = 0.5, outer_momentum: float = 0.5, fault_sites: int = 4, seed: int = 0) -> dict:
    if rounds < 2 or fault_sites < 2:
        raise InputError(f"--rounds {rounds} / --fault-sites {fault_sites}: the fault run kills one of its sites at "
                         "half of the run; use 2 or more of each")
    source = byte_source(data_dir, batch_size, seq_len)
    steps = rounds * inner_steps

    def train(mode: str, mbps: float, name: str, n_sites: int = 2, **extra) -> dict:
        link = {"bandwidth_mbps": mbps, "latency_ms": latency_ms}
        cfg = PretrainConfig(depth=depth, sequence_len=seq_len, device_batch_size=batch_size, steps=steps, mode=mode, seed=seed,
                             sites=[{"name": f"site-{chr(97 + i)}", "link": link} for i in range(n_sites)],
                             threads_per_worker=1, precision="fp32", compile=False, eval_every=0, eval_tokens=65536,
                             checkpoint_every=0, experiment=EXPERIMENT, run_name=f"bench-wan-{name}-{mbps:g}mbps",
                             register_model=False, **extra)
        with tempfile.TemporaryDirectory() as tmp:
            s = run_training(cfg, source, out_dir=tmp, stage="bench")
        floors = {name: link_floor(site, mbps, latency_ms) for name, site in s["sites"].items()}
        return {"wall_s": round(s["train_seconds"], 2), "run_wall_s": round(s["wall_seconds"], 2),
                "comm_s": round(s["comm_seconds"], 2), "link_floor_s": round(max(floors.values()), 2),
                "paced": all(s["sites"][name]["comm_seconds"] >= floor for name, floor in floors.items()),
                "bytes_per_worker": s["comm_bytes_per_worker"], "val_bpb": round(s["val_bpb"], 4), "tokens": s["tokens"],
                "dropped": s["dropped"]}

    diloco = {"inner_steps": inner_steps, "outer_lr": outer_lr, "outer_momentum": outer_momentum}
    out: dict = {"sites": 2, "rounds": rounds, "inner_steps": inner_steps, "steps": steps, "depth": depth,
                 "batch_tokens_per_site": batch_size * seq_len, "latency_ms": latency_ms,
                 "outer": {"lr": outer_lr, "momentum": outer_momentum, "nesterov": True}, "links": {}}
    for mbps in bandwidths:
        entry = {"ddp": train("ddp", mbps, "ddp"),
                 "diloco": train("diloco", mbps, "diloco", diloco=diloco),
                 "diloco_int8": train("diloco", mbps, "diloco-int8",
                                      diloco={**diloco, "transfer_dtype": "int8", "error_feedback": True})}
        ddp, dil, q = entry["ddp"], entry["diloco"], entry["diloco_int8"]
        entry["wall_ratio_diloco_over_ddp"] = round(dil["wall_s"] / ddp["wall_s"], 4)
        entry["bpb_gap_diloco_vs_ddp"] = round(dil["val_bpb"] / ddp["val_bpb"] - 1, 4)
        entry["bytes_ratio_fp32_over_int8"] = round(dil["bytes_per_worker"] / q["bytes_per_worker"], 3)
        entry["bpb_gap_int8_vs_fp32"] = round(q["val_bpb"] / dil["val_bpb"] - 1, 4)
        out["links"][f"{mbps:g}"] = entry
    middle = sorted(bandwidths)[len(bandwidths) // 2]
    fault = train("diloco", middle, "diloco-fault", fault_sites, diloco=diloco, kill=[{"site": "site-b", "round": rounds // 2}])
    clean = train("diloco", middle, "diloco-no-fault", fault_sites, diloco=diloco)
    out["fault"] = {"bandwidth_mbps": middle, "sites": fault_sites, "killed": {"site": "site-b", "round": rounds // 2},
                    "completed": fault["val_bpb"] is not None, "val_bpb": fault["val_bpb"],
                    "no_fault_val_bpb": clean["val_bpb"], "bpb_gap": round(fault["val_bpb"] / clean["val_bpb"] - 1, 4),
                    "dropped": fault["dropped"], "tokens": fault["tokens"], "no_fault_tokens": clean["tokens"]}
    at = out["links"].get("100")
    if at is not None:
        out["targets"] = {
            "diloco_wall_at_most_tenth_of_ddp_at_100mbps": at["wall_ratio_diloco_over_ddp"] <= 0.1,
            "diloco_bpb_within_5pct_of_ddp": abs(at["bpb_gap_diloco_vs_ddp"]) <= 0.05,
            "int8_at_least_3_5x_fewer_bytes": at["bytes_ratio_fp32_over_int8"] >= 3.5,
            "int8_bpb_within_1pct": abs(at["bpb_gap_int8_vs_fp32"]) <= 0.01,
            "fault_completes_within_5pct": out["fault"]["completed"] and abs(out["fault"]["bpb_gap"]) <= 0.05}
    out["every_site_paced_to_its_link"] = all(result["paced"] for entry in out["links"].values()
                                              for result in entry.values() if isinstance(result, dict))
    return out
