"""The single / DDP driver: one machine's workers, one process each, joined by one torch.distributed group.

One worker trains in the driver's process; data-parallel workers run as Ray actors (gloo on CPU,
NCCL on CUDA), rank 0 logging to MLflow, printing progress and writing checkpoints with every
rank's own optimizer and data state. With `sdc` on, a fault injector wraps a step's forward and
backward and a guard reviews its gradients before they are applied (tasks/llm/sdc/).
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from tasks.common.precision import hardware_tags, resolve_precision, torch_dtype
from tasks.common.progress import Progress
from tasks.llm.config import PretrainConfig
from tasks.llm.data.batches import BatchSource
from tasks.llm.model.bpb import bits_per_byte
from tasks.llm.model.flops import utilisation
from tasks.llm.model.gpt import GPT
from tasks.llm.model.optim import build_optimizers, lr_multiplier, set_lr
from tasks.llm.sdc.attach import attach as attach_sdc
from tasks.llm.train.build import batch_tokens, plan_steps, prepare_model
from tasks.llm.train.checkpoint import (load_state, load_weights, publish_checkpoint, read_meta, save_checkpoint, save_state,
                                        staging_folder, write_final_model)
from tasks.llm.train.ddp import CommStats, allreduce_gradients
from tasks.llm.train.device import dist_backend
from tasks.llm.train.records import Due, MlflowLogger, Throughput, checkpoint_meta, run_summary
from tasks.llm.train.run_folder import RunContext, progress_log
from tasks.llm.train.step import take_step


def train_worker(cfg: PretrainConfig, source: BatchSource, rank: int, world: int, ctx: RunContext) -> dict:
    """Train as rank `rank` of `world`; returns the run summary (rank 0) or this rank's stats."""
    torch.set_num_threads(cfg.threads_per_worker or max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        dist.init_process_group(dist_backend(ctx.device), init_method=ctx.dist_url, rank=rank, world_size=world)
    try:
        return _train(cfg, source, rank, world, ctx)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(cfg: PretrainConfig, source: BatchSource, rank: int, world: int, ctx: RunContext) -> dict:
    steps, accum = plan_steps(cfg, source)
    device = ctx.device
    model, init_meta = prepare_model(cfg, source, ctx.init_checkpoint, device)
    precision = resolve_precision(cfg.precision, device)
    autocast = precision == "bf16"
    optimizers = build_optimizers(model, cfg.optim, precision)
    comm = CommStats()
    ckpt_root = Path(ctx.out_dir) / "checkpoints"
    step, position, history, evals = 0, None, [], []
    latest = Path(ctx.resume_from) if ctx.resume_from else None
    if latest is not None:
        step, position, meta = _restore(latest, model, optimizers, rank)
        history, evals = meta["history"], meta["evals"]
        comm = CommStats(**meta["comm"])

    lead = rank == 0
    batches = source.batches(rank, world, position)
    has_val = lead and hasattr(source, "val_batches")
    token_bytes = source.token_bytes() if has_val else None
    dtype = torch_dtype(precision)
    sdc_log, injector, guard = attach_sdc(model, optimizers, cfg, rank, dtype, shared=cfg.mode == "ddp" and world > 1)
    flops_per_token = model.num_flops_per_token()
    logger = MlflowLogger(ctx) if lead else None
    if lead:
        logger.tags({"precision": precision, **hardware_tags()})
    progress = Progress(steps, f"{ctx.stage}/{cfg.mode}", unit="tok", log_file=progress_log(ctx.out_dir)) if lead else None
    eval_due, ckpt_due = Due(cfg.eval_every, step), Due(cfg.checkpoint_every, step)
    train_seconds, throughput = 0.0, Throughput()
    last_mult = None

    while step < steps:
        t0 = time.perf_counter()
        mult = lr_multiplier(step, steps, cfg.optim)
        if mult != last_mult:
            set_lr(optimizers, mult)
            last_mult = mult
        micro = [next(batches) for _ in range(accum)]
        position = micro[-1][2]
        action, loss_sum, step_tokens = take_step(
            model, optimizers, micro, step, accum=accum, autocast=autocast, device=device, clip=cfg.optim.grad_clip,
            injector=injector, guard=guard, can_roll_back=latest is not None,
            allreduce=functools.partial(allreduce_gradients, model, comm) if world > 1 else None)
        if action == "rollback":  # every rank at once: DDP ranks share the flag
            step, position, meta = _restore(latest, model, optimizers, rank)
            history, evals = meta["history"], meta["evals"]
            batches = source.batches(rank, world, position)
            eval_due, ckpt_due, last_mult = Due(cfg.eval_every, step), Due(cfg.checkpoint_every, step), None
            continue
        step += 1
        last = step == steps
        step_seconds = time.perf_counter() - t0
        train_seconds += step_seconds
        throughput.add(step_seconds, step_tokens * world)
        history.append(loss_sum / accum)
        if not lead:
            if ckpt_due(step, last):
                latest = _checkpoint(ckpt_root, model, optimizers, position, rank, world, step, {})
            continue
        rate = throughput.rate()
        progress.update(step, step_tokens * world, loss=history[-1])
        metrics = {}
        if step % cfg.log_every == 0 or last:
            metrics = {"train_loss": history[-1], "tokens_per_s": rate, "lr_multiplier": mult,
                       "mfu": utilisation(flops_per_token * rate / world, dtype, device)[0], "comm_bytes": comm.bytes,
                       "comm_seconds": comm.seconds, "sync_rounds": comm.rounds}
        if has_val and eval_due(step, last):
            bpb = bits_per_byte(model, source.val_batches(cfg.eval_tokens), token_bytes, autocast)
            evals.append({"step": step, "val_bpb": bpb})
            metrics["val_bpb"] = bpb
            progress.say(f"[{ctx.stage}/{cfg.mode}] step {step}: val bpb {bpb:.4f}")
        if sdc_log is not None:
            metrics.update(sdc_log.step_metrics())
        logger.log(metrics, step)
        if ckpt_due(step, last):
            meta = checkpoint_meta(cfg, ctx, source, init_meta, step=step, history=history, evals=evals,
                                   comm=comm.as_dict(), world=world)
            latest = _checkpoint(ckpt_root, model, optimizers, position, rank, world, step, meta)

    events = sdc_log.summary() if sdc_log is not None else {}
    if not lead:
        return {"rank": rank, "comm": comm.as_dict(), **events}
    model_dir = write_final_model(ctx.out_dir, model, read_meta(latest))
    return run_summary(cfg, ctx, model, workers=world, steps=steps, accum=accum,
                       tokens=steps * accum * world * batch_tokens(source, cfg), history=history, evals=evals,
                       rate=throughput.rate(), dtype=dtype, precision=precision, comm_bytes=comm.bytes,
                       comm_seconds=comm.seconds, sync_rounds=comm.rounds, train_seconds=train_seconds,
                       model_dir=model_dir, **events)


def _restore(folder: Path, model: GPT, optimizers, rank: int) -> tuple[int, dict, dict]:
    """Weights and this rank's optimizer and data state from a checkpoint: (step, data position, meta)."""
    meta = read_meta(folder)
    load_weights(model, folder)
    mine = load_state(folder / f"rank{rank}.pt")
    for opt, state in zip(optimizers, mine["optimizers"]):
        opt.load_state_dict(state)
    return meta["step"], mine["position"], meta


def _checkpoint(root: Path, model: GPT, optimizers, position: dict, rank: int,
                world: int, step: int, meta: dict) -> Path:
    """Every rank writes its own state into the staging folder; rank 0 completes it and publishes it."""
    tmp = staging_folder(root, step)
    tmp.mkdir(parents=True, exist_ok=True)
    save_state(tmp / f"rank{rank}.pt", {"optimizers": [o.state_dict() for o in optimizers], "position": position})
    if world > 1:
        dist.barrier()
    if rank == 0:
        save_checkpoint(tmp, model, {}, meta)
        return publish_checkpoint(root, step)
    return root / f"step_{step:06d}"


def run_on_ray(cfg: PretrainConfig, source: BatchSource, ctx: RunContext) -> list[dict]:
    """One Ray actor per rank; rank 0's node address hosts the gloo rendezvous."""
    import ray

    from tasks.common.ray_runtime import cluster_cpus, ensure_ray

    ensure_ray()
    world = cfg.world_size
    cpus = min(1.0, cluster_cpus() / world)  # never ask for more than the cluster has: that would hang
    actor_cls = ray.remote(_TrainActor)
    env = {"OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP threads sleep: spinning wrecks a shared CPU
    gpus = 1 if ctx.device == "cuda" else 0
    actors = [actor_cls.options(num_cpus=cpus, num_gpus=gpus, runtime_env={"env_vars": env}).remote() for _ in range(world)]
    try:
        host, port = ray.get(actors[0].address.remote())
        ctx.dist_url = f"tcp://{host}:{port}"
        return ray.get([a.run.remote(cfg, source, rank, world, ctx) for rank, a in enumerate(actors)])
    finally:
        for actor in actors:
            ray.kill(actor)


class _TrainActor:
    def address(self) -> tuple[str, int]:
        import ray

        from tasks.common.ports import free_port

        return ray.util.get_node_ip_address(), free_port()

    def run(self, cfg: PretrainConfig, source: BatchSource, rank: int, world: int, ctx: RunContext) -> dict:
        return train_worker(cfg, source, rank, world, ctx)
