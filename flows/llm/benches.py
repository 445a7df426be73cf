"""`seedflow bench` entries of the LLM pipeline, and its part of `seedflow demo`.

Each benchmark prints one JSON object as its last line, naming the CPU it ran on. The data folder
is resolved once, here, and passed down resolved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from flows.llm.checks import resolve_data_dir
from flows.llm.commands import run_study_flow, run_tokenize_flow
from flows.llm.curtail import curtail_configs
from flows.options import DATA_DIR_OPTION, cli_overrides, comma_list, int_list, set_option
from flows.runtime import run_flow
from tasks.llm.config import PretrainConfig


def bench_pretrain(
    depths: str = typer.Option("4,8,12", help="Depths of the single-process throughput models (comma-separated)."),
    seq_len: int = typer.Option(512, help="Sequence length of the throughput models."),
    vocab: int = typer.Option(8192, help="Vocabulary of the throughput models (random tokens)."),
    accum: int = typer.Option(8, help="Micro-batches of 8 sequences per optimizer step in the throughput runs."),
    compare_steps: int = typer.Option(200, help="Optimizer steps of each DDP / DiLoCo run (same tokens, same seed); 0 skips it."),
    inner_steps: int = typer.Option(50, help="DiLoCo H."),
    seeds: str = typer.Option("0,1,2", help="Seeds of the DDP / DiLoCo comparison (bpb figures are their mean)."),
    precision: str = typer.Option("auto", help="auto | bf16 | fp32 for the throughput runs (auto: bf16 only where fast)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda for the throughput runs (auto: CUDA when present)."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Tokens/s and MFU (vs the matmul peak of the dtype in use on the device, measured here) of compiled
    single-process training per depth, the eager trainer at the first depth as baseline, then DDP vs DiLoCo
    on 2 Ray workers: final val bpb, bytes per worker and their ratio, wall seconds. Names the CPU, device
    and precision."""
    from tasks.common.precision import hardware_tags
    from tasks.llm.benches.pretrain import compare_ddp_diloco, single_throughput
    from tasks.llm.train.device import resolve_device

    depth_list, seed_list = int_list(depths, "--depths"), int_list(seeds, "--seeds")
    data_dir = resolve_data_dir(data_dir)
    device = resolve_device(device)
    compiled = [single_throughput(d, seq_len, vocab, accum=accum, compile=True, precision=precision, device=device)
                for d in depth_list]
    eager = single_throughput(compiled[0]["depth"], seq_len, vocab, accum=accum, compile=False, precision=precision,
                              device=device)
    out = {"hardware": hardware_tags(), "device": compiled[0]["device"], "precision": compiled[0]["precision"],
           "single": compiled, "single_eager": eager,
           "compile_speedup": round(compiled[0]["tokens_per_s"] / eager["tokens_per_s"], 2)}
    if compare_steps:
        out.update(compare_ddp_diloco(data_dir, compare_steps, inner_steps, seeds=tuple(seed_list)))
    print(json.dumps(out))


def bench_study(data_dir: str = DATA_DIR_OPTION) -> None:
    """The study at a small fixed size (`llm.bench_study` overrides); last line: the report card's numbers."""
    from flows.runtime import prefect_api
    from tasks.common.config import read_params
    from tasks.common.precision import hardware_tags

    data_dir = resolve_data_dir(data_dir)
    settings = read_params()["llm"].get("bench_study", {})
    tokens_dir = settings.get("tokenizer", {}).get("out_dir", "results/bench/llm_study/tokens")
    study_overrides = {**settings.get("study", {}), "pretrain.tokens_dir": tokens_dir, "eval.tokens_dir": tokens_dir}
    start = time.perf_counter()
    with prefect_api():  # one server for both flows
        run_tokenize_flow(settings.get("tokenizer", {}), data_dir)
        result = run_study_flow(study_overrides, data_dir)
    print(json.dumps({"hardware": hardware_tags(), "report_card": result["numbers"], "chance": result["chance"],
                      "report": result["report"], "wall_s": round(time.perf_counter() - start, 1)}))


def bench_sdc(
    steps: int = typer.Option(1000, help="Optimizer steps of every run (the study's runs are at least 1000 steps)."),
    trials_per_cell: int = typer.Option(1, help="Fault trials per stage x bit cell and fault-free twin."),
    twins: int = typer.Option(3, help="Fault-free runs (seeds) the trials are compared with."),
    spike_nats: float = typer.Option(0.5, help="Harmful: a train loss this far above the fault-free twin's at a step."),
    worse_bpb: float = typer.Option(0.01, help="Harmful: a final val bpb this much (relative) above the twin's."),
    schedule_p: float = typer.Option(0.02, help="p of the full-schedule (many-event) runs behind the val bpb figures."),
    cells: str = typer.Option(None, help="Only these stage/bit cells, e.g. optimizer/bit30,input/bit28 (default: all)."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Silent data corruption as the study measured it: bit flips (every exponent bit and the mantissa) in a
    matmul's input, output, gradient or the optimizer state; finite and non-finite harm apart; the detector's
    detection against false alarms over alpha beside the non-finite check and a loss z-score; recompute's val bpb."""
    from tasks.common.precision import hardware_tags
    from tasks.llm.benches.sdc import study

    start = time.perf_counter()
    data_dir = resolve_data_dir(data_dir)
    out = study(data_dir, steps=steps, trials_per_cell=trials_per_cell, twins=twins, spike_nats=spike_nats,
                worse_bpb=worse_bpb, schedule_p=schedule_p, cells=tuple(comma_list(cells) if cells else ()))
    print(json.dumps({"hardware": hardware_tags(), **out, "wall_s": round(time.perf_counter() - start, 1)}))


def bench_diloco_wan(
    bandwidths: str = typer.Option("1000,100,10", help="Link bandwidths in Mbit/s (comma-separated)."),
    latency_ms: float = typer.Option(50.0, help="Link latency."),
    rounds: int = typer.Option(20, help="DiLoCo outer rounds of the small regime (the fault run kills a site at half of them)."),
    inner_steps: int = typer.Option(30, help="DiLoCo H of the small regime; every run trains rounds x H steps on each of 2 sites."),
    depth: int = typer.Option(1, help="Small regime's model depth (width 64 x depth; bytes as tokens)."),
    batch_size: int = typer.Option(4, help="Sequences per step per site (small regime)."),
    seq_len: int = typer.Option(64, help="Sequence length (small regime)."),
    outer_lr: float = typer.Option(0.5, help="DiLoCo outer lr (Nesterov)."),
    outer_momentum: float = typer.Option(0.5, help="DiLoCo outer momentum."),
    fault_sites: int = typer.Option(4, help="Sites of the fault run and of its no-fault twin."),
    compute_rounds: int = typer.Option(2, help="Outer rounds of the compute-bound regime (depth 4, seq 256); 0 skips it."),
    compute_inner_steps: int = typer.Option(3, help="DiLoCo H of the compute-bound regime."),
    paper_steps: int = typer.Option(2000, help="Steps per site of the paper-outer comparison (lr 0.7, momentum 0.9); 0 skips it."),
    paper_inner_steps: int = typer.Option(100, help="DiLoCo H of the paper-outer comparison."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """DDP vs DiLoCo vs int8 DiLoCo between 2 sites over emulated links, per regime (small; compute-bound), equal
    tokens and seed: wall split into compute, comm and overhead, bytes per worker, val bpb, the link model's error;
    DiLoCo with one site killed -9; the paper's outer step at H=100 against DDP."""
    from tasks.common.precision import hardware_tags
    from tasks.llm.benches.diloco_wan import compute_bound, run

    start = time.perf_counter()
    data_dir = resolve_data_dir(data_dir)
    mbps = tuple(float(b) for b in comma_list(bandwidths) or [])
    regimes = [compute_bound(compute_rounds, compute_inner_steps)] if compute_rounds else []
    out = run(data_dir, mbps, latency_ms, rounds, inner_steps, depth, batch_size, seq_len, outer_lr, outer_momentum,
              fault_sites, regimes=regimes, paper_steps=paper_steps, paper_inner_steps=paper_inner_steps)
    print(json.dumps({"hardware": hardware_tags(), "precision": "fp32", **out, "wall_s": round(time.perf_counter() - start, 1)}))


def bench_curtail(
    target_site_steps: int = typer.Option(3000, help="Optimizer steps summed over sites, every run."),
    depth: int = typer.Option(1, help="Model depth (width 64 x depth; bytes as tokens)."),
    batch_size: int = typer.Option(4, help="Sequences per step per site."),
    seq_len: int = typer.Option(64, help="Sequence length."),
    start_days: int = typer.Option(12, min=1, help="Start days spread over the trace for the emission figures "
                                                   "(plans only, no training)."),
    set_: list[str] = set_option("threshold=200"),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Curtailment-aware training (reactive and forecast policies, the two-site variant) against one site training
    non-stop in each region, at equal IID tokens: kg CO2 over start days beside the trace's floor, energy, share
    inside windows, simulated hours, val bpb."""
    from tasks.common.precision import hardware_tags
    from tasks.llm.benches.curtail import run
    from tasks.llm.curtail.traces import site_traces
    from tasks.llm.benches.diloco_wan import byte_source

    start = time.perf_counter()
    data_dir = resolve_data_dir(data_dir)
    ccfg, pcfg = curtail_configs({**cli_overrides(set_), "target_site_steps": target_site_steps})
    pcfg = PretrainConfig.model_validate({**pcfg.model_dump(), "depth": depth, "sequence_len": seq_len,
                                          "device_batch_size": batch_size, "register_model": False})
    traces = site_traces(ccfg, Path(data_dir) if data_dir else None)
    out = run(ccfg, pcfg, byte_source(data_dir, batch_size, seq_len), traces, start_days=start_days)
    print(json.dumps({"hardware": hardware_tags(), **out, "wall_s": round(time.perf_counter() - start, 1)}))


BENCHES = {"pretrain": bench_pretrain, "llm-study": bench_study, "sdc": bench_sdc, "diloco-wan": bench_diloco_wan,
           "curtail": bench_curtail}


def demo(data_dir: str | None) -> str:
    """Tokenize tinyshakespeare, then a tiny pretrain in DDP and in DiLoCo: two runs side by side in MLflow."""
    from tasks.common.config import read_params

    data_dir = resolve_data_dir(data_dir)
    settings = read_params().get("demo", {}).get("llm", {})
    run_tokenize_flow(settings.get("tokenizer", {}), data_dir)
    lines = []
    for mode in ("ddp", "diloco"):  # the demo replaces its own earlier results
        overrides = {**settings.get("pretrain", {}), "mode": mode, "out_dir": f"results/demo/llm/pretrain_{mode}",
                     "run_name": f"demo-{mode}", "overwrite": True}
        if mode == "diloco":
            overrides["sites"] = settings.get("diloco_sites", [])
        s = run_flow("flows.llm.pretrain:llm_pretrain", overrides=overrides)
        lines.append(f"{mode}: val bpb {s['val_bpb']:.3f}, {s['comm_bytes_per_worker'] / 1e6:.1f} MB/worker, "
                     f"{s['wall_seconds']:.0f}s, {s['precision']}")
    c = run_flow("flows.llm.curtail:llm_curtail", overrides=settings.get("curtail", {}), data_dir=data_dir)
    return (f"llm pretrain ({'; '.join(lines)}) in MLflow experiment 'llm-pretrain'; curtailment-aware run "
            f"{c['kg_co2']:.2f} kg CO2, {c['share_in_windows']:.0%} of energy in clean windows, {c['sim_hours']:.0f} "
            f"simulated hours, val bpb {c['val_bpb']:.3f} in 'llm-curtail'; results/demo/llm/")
