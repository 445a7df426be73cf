"""`seedflow bench diloco-wan`: DDP, DiLoCo and int8 DiLoCo between two sites over emulated links.

Every run of a regime trains the same small GPT on the same tinyshakespeare bytes (or the generated
corpus without the data folder), from the same seed, for the same tokens: two sites of one worker,
each link at the bandwidth under test with 50 ms latency. DDP all-reduces gradients every step
(two sites: the ring is the star through the hub); DiLoCo syncs every H steps, int8 DiLoCo with
error feedback. Regimes differ in how compute compares with communication: `small` (depth 1,
~8 ms a step on 2 cores) is all communication; `compute_bound` (depth 4, sequence 256, over 0.5 s
a step) is where DiLoCo's saving has to compete with compute, and runs few steps (its bpb says
little; its times are the point). The fault entry kills -9 one site's worker at half of a DiLoCo
run of `fault_sites` sites of the first regime and compares it with the same run without the
fault. `paper_outer` trains the first regime's model with the DiLoCo paper's outer step (lr 0.7,
Nesterov momentum 0.9) at a scale it is meant for (H=100, 2000 steps per site) beside the bench's
own outer step and DDP at equal tokens, on unemulated links (only bpb matters there).

Per run: `wall_s` is the training's wall time, first round to last; `compute_s`, `comm_s` and
`overhead_s` split it per round by the site the round waited for (its compute, its link time,
and the rest: Ray's dispatch and transfers, the hub's averaging and outer step). `run_wall_s` adds
the one-off start of the workers and the final evaluation and save. `link_model` is the error of
the link model (bytes / bandwidth + latency) against each transfer's time on the wall clock.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass

import numpy as np

from tasks.common.errors import InputError
from tasks.llm.benches.pretrain import EXPERIMENT, shakespeare_bytes
from tasks.llm.config import PretrainConfig
from tasks.llm.data.batches import TokenStreamSource
from tasks.llm.train.run import run_training


@dataclass(frozen=True)
class Regime:
    """A model size and round plan: how much compute each step costs against what it sends."""

    name: str
    depth: int
    seq_len: int
    batch_size: int
    rounds: int
    inner_steps: int
    eval_tokens: int = 65536


def compute_bound(rounds: int = 2, inner_steps: int = 3) -> Regime:
    return Regime("compute_bound", depth=4, seq_len=256, batch_size=4, rounds=rounds, inner_steps=inner_steps,
                  eval_tokens=8192)


def byte_source(data_dir: str | None, batch_size: int, seq_len: int) -> TokenStreamSource:
    try:
        return shakespeare_bytes(data_dir, batch_size, seq_len)
    except FileNotFoundError:
        from tasks.llm.data.datasets.synthetic import generate_corpus

        arr = np.frombuffer(generate_corpus(1_000_000).encode(), dtype=np.uint8).astype(np.uint16)
        cut = int(len(arr) * 0.95)
        return TokenStreamSource(batch_size, seq_len, arrays={"train": arr[:cut], "val": arr[cut:]},
                                 byte_lengths=np.ones(256, dtype=np.int64))


def run(data_dir: str | None, bandwidths: tuple[float, ...] = (1000.0, 100.0, 10.0), latency_ms: float = 50.0,
        rounds: int = 20, inner_steps: int = 30, depth: int = 1, batch_size: int = 4, seq_len: int = 64,
        outer_lr: float = 0.5, outer_momentum: float = 0.5, fault_sites: int = 4, seed: int = 0, *,
        regimes: list[Regime] | None = None, paper_steps: int = 2000, paper_inner_steps: int = 100) -> dict:
    """The first regime is the one the arguments describe; `regimes` replaces the second (compute_bound);
    `paper_steps` 0 skips the paper-outer comparison."""
    if rounds < 2 or fault_sites < 2:
        raise InputError(f"--rounds {rounds} / --fault-sites {fault_sites}: the fault run kills one of its sites at "
                         "half of the run; use 2 or more of each")
    if paper_steps and paper_steps < 2 * paper_inner_steps:
        raise InputError(f"--paper-steps {paper_steps} gives fewer than 2 outer rounds of H={paper_inner_steps}; "
                         "raise it or pass 0 to skip the paper-outer runs")
    first = Regime("small", depth, seq_len, batch_size, rounds, inner_steps)
    regimes = [first, *(regimes if regimes is not None else [compute_bound()])]
    for regime in regimes:
        if regime.rounds < 1 or regime.inner_steps < 1:
            raise InputError(f"regime {regime.name}: {regime.rounds} round(s) of H={regime.inner_steps} trains nothing; "
                             "use 1 or more of each")
    sources = {}

    def train(regime: Regime, mode: str, mbps: float, name: str, n_sites: int = 2, steps: int = 0,
              latency: float = latency_ms, **extra) -> dict:
        key = (regime.batch_size, regime.seq_len)
        sources.setdefault(key, byte_source(data_dir, *key))
        link = {"bandwidth_mbps": mbps, "latency_ms": latency}
        cfg = PretrainConfig(depth=regime.depth, sequence_len=regime.seq_len, device_batch_size=regime.batch_size,
                             steps=steps or regime.rounds * regime.inner_steps, mode=mode, seed=seed,
                             sites=[{"name": f"site-{chr(97 + i)}", "link": link} for i in range(n_sites)],
                             threads_per_worker=1, precision="fp32", compile=False, eval_every=0,
                             eval_tokens=regime.eval_tokens, checkpoint_every=0, experiment=EXPERIMENT,
                             run_name=f"bench-wan-{regime.name}-{name}-{mbps:g}mbps", register_model=False, **extra)
        with tempfile.TemporaryDirectory() as tmp:
            s = run_training(cfg, sources[key], out_dir=tmp, stage="bench")
        return {"wall_s": round(s["train_seconds"], 2), "compute_s": round(s["compute_seconds"], 2),
                "comm_s": round(s["link_seconds"], 2), "overhead_s": round(s["overhead_seconds"], 2),
                "run_wall_s": round(s["wall_seconds"], 2), "bytes_per_worker": s["comm_bytes_per_worker"],
                "val_bpb": round(s["val_bpb"], 4), "tokens": s["tokens"], "dropped": s["dropped"],
                "link_model": _link_model(s)}

    def diloco(regime: Regime, lr: float = outer_lr, momentum: float = outer_momentum, h: int = 0) -> dict:
        return {"inner_steps": h or regime.inner_steps, "outer_lr": lr, "outer_momentum": momentum}

    out: dict = {"sites": 2, "latency_ms": latency_ms, "outer": {"lr": outer_lr, "momentum": outer_momentum,
                                                                 "nesterov": True}, "regimes": []}
    for regime in regimes:
        entry = {**asdict(regime), "steps": regime.rounds * regime.inner_steps,
                 "batch_tokens_per_site": regime.batch_size * regime.seq_len, "links": {}}
        for mbps in bandwidths:
            runs = {"ddp": train(regime, "ddp", mbps, "ddp"),
                    "diloco": train(regime, "diloco", mbps, "diloco", diloco=diloco(regime)),
                    "diloco_int8": train(regime, "diloco", mbps, "diloco-int8",
                                         diloco={**diloco(regime), "transfer_dtype": "int8", "error_feedback": True})}
            entry["links"][f"{mbps:g}"] = {**runs, **_ratios(runs)}
        entry["wall_ratio_diloco_over_ddp"] = {k: v["wall_ratio_diloco_over_ddp"] for k, v in entry["links"].items()}
        ddp = [v["ddp"] for v in entry["links"].values()]
        entry["compute_s_per_step"] = round(min(r["compute_s"] for r in ddp) / entry["steps"], 4)
        out["regimes"].append(entry)
    middle = sorted(bandwidths)[len(bandwidths) // 2]
    kill = {"site": "site-b", "round": rounds // 2}
    fault = train(first, "diloco", middle, "diloco-fault", fault_sites, diloco=diloco(first), kill=[kill])
    clean = train(first, "diloco", middle, "diloco-no-fault", fault_sites, diloco=diloco(first))
    out["fault"] = {"bandwidth_mbps": middle, "sites": fault_sites, "killed": kill,
                    "completed": fault["val_bpb"] is not None, "val_bpb": fault["val_bpb"],
                    "no_fault_val_bpb": clean["val_bpb"], "bpb_gap": round(fault["val_bpb"] / clean["val_bpb"] - 1, 4),
                    "dropped": fault["dropped"], "tokens": fault["tokens"], "no_fault_tokens": clean["tokens"]}
    if paper_steps:
        out["paper_outer"] = _paper_outer(train, diloco, first, paper_steps, paper_inner_steps, outer_lr,
                                          outer_momentum)
    at = out["regimes"][0]["links"].get("100")
    if at is not None:
        out["targets"] = {
            "diloco_wall_at_most_tenth_of_ddp_at_100mbps": at["wall_ratio_diloco_over_ddp"] <= 0.1,
            "diloco_bpb_within_5pct_of_ddp": abs(at["bpb_gap_diloco_vs_ddp"]) <= 0.05,
            "int8_at_least_3_5x_fewer_bytes": at["bytes_ratio_fp32_over_int8"] >= 3.5,
            "int8_bpb_within_1pct": abs(at["bpb_gap_int8_vs_fp32"]) <= 0.01,
            "fault_completes_within_5pct": out["fault"]["completed"] and abs(out["fault"]["bpb_gap"]) <= 0.05}
    out["link_model"] = _link_model_overall(out)
    return out


def _ratios(runs: dict) -> dict:
    ddp, dil, q = runs["ddp"], runs["diloco"], runs["diloco_int8"]
    return {"wall_ratio_diloco_over_ddp": round(dil["wall_s"] / ddp["wall_s"], 4),
            "bpb_gap_diloco_vs_ddp": round(dil["val_bpb"] / ddp["val_bpb"] - 1, 4),
            "bytes_ratio_fp32_over_int8": round(dil["bytes_per_worker"] / q["bytes_per_worker"], 3),
            "bpb_gap_int8_vs_fp32": round(q["val_bpb"] / dil["val_bpb"] - 1, 4)}


def _paper_outer(train, diloco, regime: Regime, steps: int, h: int, outer_lr: float, outer_momentum: float) -> dict:
    """DDP, DiLoCo with the paper's outer step and with the bench's, at H=h and equal tokens, links unemulated."""
    ddp = train(regime, "ddp", 0.0, "paper-ddp", steps=steps, latency=0.0)
    paper = train(regime, "diloco", 0.0, "paper-outer", steps=steps, latency=0.0, diloco=diloco(regime, 0.7, 0.9, h))
    ours = train(regime, "diloco", 0.0, "paper-bench-outer", steps=steps, latency=0.0,
                 diloco=diloco(regime, outer_lr, outer_momentum, h))
    return {"steps_per_site": steps, "inner_steps": h, "outer_rounds": -(-steps // h), "ddp_val_bpb": ddp["val_bpb"],
            "paper": {"lr": 0.7, "momentum": 0.9, "val_bpb": paper["val_bpb"],
                      "bpb_gap_vs_ddp": round(paper["val_bpb"] / ddp["val_bpb"] - 1, 4), "wall_s": paper["wall_s"]},
            "bench": {"lr": outer_lr, "momentum": outer_momentum, "val_bpb": ours["val_bpb"],
                      "bpb_gap_vs_ddp": round(ours["val_bpb"] / ddp["val_bpb"] - 1, 4), "wall_s": ours["wall_s"]},
            "ddp_wall_s": ddp["wall_s"], "tokens": [ddp["tokens"], paper["tokens"], ours["tokens"]]}


def _link_model(s: dict) -> dict:
    median, worst = s["link_model_median_error"], s["link_model_max_error"]
    return {"transfers": s["link_model_transfers"], "median_error": None if median is None else round(median, 4),
            "max_error": None if worst is None else round(worst, 4)}


def _link_model_overall(out: dict) -> dict:
    """Over every paced run: the spread of the runs' median errors and the largest error of any transfer."""
    runs = [r["link_model"] for regime in out["regimes"] for entry in regime["links"].values()
            for r in entry.values() if isinstance(r, dict) and r["link_model"]["transfers"]]
    if not runs:
        return {"transfers": 0}
    return {"transfers": sum(r["transfers"] for r in runs),
            "median_error_range": [min(r["median_error"] for r in runs), max(r["median_error"] for r in runs)],
            "max_error": max((r["max_error"] for r in runs), key=abs)}
