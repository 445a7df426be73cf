"""Training across sites through a hub: elastic, fault-tolerant DiLoCo (and DDP across sites).

The driver is the hub: a round loop over a pool of sites (tasks/federated/pool.py) and a sync rule
(tasks/federated/strategy.py: `DiLoCo`, or `DDPAcrossSites`), with the GPT plugged in. Each round
the rule says what every active site gets (`configure_fit`), the hub puts it into Ray's object
store as one typed message per site (tasks/federated/messages.py), each site's workers
(tasks/llm/sites/worker.py) fetch it over their emulated link (tasks/federated/link.py), train,
and the site's first worker replies with its pseudo-gradient (DiLoCo) or gradient (DDP, a round
per step) and the tokens it processed; the rule makes the global step of the replies (`aggregate_fit`).

Membership is not fixed. A round completes with the sites that report: a site whose actor dies,
raises or misses `round_timeout_s` is dropped (its other workers are killed) and the rest go on;
averages are weighted by tokens, so they need no fixed set. A dropped site with `rejoin_after`
comes back that many rounds later as fresh worker processes. A site joins (or rejoins) at the
start of a round with the full global parameters and fresh inner optimizer state; a site back
after missing an outer step, or whose pseudo-gradient was not finite, gets the full parameters too.
DDP replicas must stay identical, so a DDP site that starts without its own optimizer state (new
at a resume, or rejoining) gets a copy of the others'. Checkpoints hold the global state (weights,
outer optimizer) and each site's inner state by name, so a run resumes with a different set of
sites. The hub evaluates, logs to MLflow, writes checkpoints and the membership timeline, and
checks the link model against each transfer's wall-clock time (tasks/federated/link.py `TransferLog`).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.common.precision import resolve_precision, torch_dtype
from tasks.common.progress import Progress
from tasks.federated.link import TransferLog
from tasks.federated.membership import MembershipTimeline
from tasks.federated.messages import RoundMessage, RoundReply
from tasks.federated.pool import Member, Pool
from tasks.federated.strategy import DDPAcrossSites, DiLoCo, Strategy
from tasks.federated.wire import flatten, unflatten_into
from tasks.llm.config import PretrainConfig
from tasks.llm.data.batches import BatchSource
from tasks.llm.model.bpb import bits_per_byte
from tasks.llm.model.flops import device_name
from tasks.llm.sdc.guard import healthy_sites
from tasks.llm.train.build import batch_tokens, build_model, plan_steps
from tasks.llm.train.checkpoint import (load_state, load_weights, publish_checkpoint, read_meta, save_checkpoint,
                                        staging_folder, write_final_model)
from tasks.llm.train.records import Due, MlflowLogger, checkpoint_meta, run_summary
from tasks.llm.train.run_folder import progress_log


@dataclass
class RoundPlan:
    """Who trains how many steps in a round, and whether the round ends with a sync."""

    steps: dict[str, int]
    sync: bool = True


def default_schedule(cfg: PretrainConfig, steps: int) -> list[RoundPlan]:
    """DiLoCo: rounds of H steps; DDP: a round per step. A site trains from `join_round` until `leave_round`."""
    h = cfg.diloco.inner_steps if cfg.mode == "diloco" else 1
    rounds = []
    for r in range(math.ceil(steps / h)):
        n = min(h, steps - r * h)
        here = [s.name for s in cfg.site_list() if s.join_round <= r and not (s.leave_round and r >= s.leave_round)]
        rounds.append(RoundPlan({name: n for name in here}))
    return rounds


class Hub:
    def __init__(self, cfg: PretrainConfig, source: BatchSource, ctx, schedule: list[RoundPlan] | None = None):
        self.cfg, self.source, self.ctx = cfg, source, ctx
        self.steps, self.accum = plan_steps(cfg, source)
        self.schedule = schedule or default_schedule(cfg, self.steps)
        self.lr_steps = [0]
        for rp in self.schedule:
            self.lr_steps.append(self.lr_steps[-1] + max(rp.steps.values(), default=0))
        self.diloco = cfg.mode == "diloco"
        self.model, self.init_meta = build_model(cfg, getattr(source, "vocab_size", None), ctx.init_checkpoint)
        self.rule = self._rule()
        self.sites = cfg.site_list()
        self.pool = Pool(self.sites)
        offsets = [0]
        for s in self.sites:
            offsets.append(offsets[-1] + s.workers)
        self.data_rank = {s.name: offsets[i] for i, s in enumerate(self.sites)}
        self.data_world = offsets[-1]
        self.timeline = MembershipTimeline([s.name for s in self.sites])
        self.history, self.evals, self.sync_rounds, self.start_round, self.site_states = [], [], 0, 0, {}
        self.sdc_rows = []
        self.transfers, self.split = TransferLog(), {"compute": 0.0, "comm": 0.0}
        if ctx.resume_from:
            self._restore(Path(ctx.resume_from))

    def _rule(self) -> Strategy:
        """The sync rule over the model's current parameters; DiLoCo averages what the SDC outer rule keeps."""
        flat = flatten(self.model.parameters())
        if self.diloco:
            return DiLoCo(flat, self.cfg.diloco, select=functools.partial(outer_selection, guard=self.cfg.sdc.guard))
        return DDPAcrossSites(flat, self.cfg.diloco)

    # ---- the loop ------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, ctx = self.cfg, self.ctx
        precision = resolve_precision(cfg.precision, ctx.device)
        self.autocast = precision == "bf16"
        logger = MlflowLogger(ctx)
        logger.tags({"precision": precision, "sites": ",".join(self.pool.members), **_hardware(ctx.device)})
        label = f"{ctx.stage}/{cfg.mode}"
        progress = Progress(self.lr_steps[-1], label, unit="tok", log_file=progress_log(ctx.out_dir))
        start_step = self.lr_steps[self.start_round]
        eval_due, ckpt_due = Due(cfg.eval_every, start_step), Due(cfg.checkpoint_every, start_step)
        log_due = Due(cfg.log_every, start_step)
        has_val = hasattr(self.source, "val_batches")
        token_bytes = self.source.token_bytes() if has_val else None
        latest, train_seconds, tokens_done = None, 0.0, 0
        try:
            for r in range(self.start_round, len(self.schedule)):
                rp = self.schedule[r]
                self._admit(r, rp, progress.say)  # a site's start (processes, model build) is not training time
                t0 = time.perf_counter()
                active = self.pool.active(rp.steps)
                if self.pool.all_failed() and not (self.diloco and self.pool.any_may_rejoin()):
                    raise RuntimeError(f"round {r}: every site has failed "
                                       f"({'; '.join(f'{m.name}: {m.failure}' for m in self.pool)})")
                sync = rp.sync or r == len(self.schedule) - 1
                replies = self._round(r, active, rp, sync)
                states = {m.name: self.pool.state_of(m, r, rp.steps, m.name in replies, sync) for m in self.pool}
                if replies and (sync or self.rule.syncs_every_step):
                    self._exclude(r, self.rule.aggregate_fit(replies, self.pool.members), states)
                self.sync_rounds += bool(sync and replies)
                self.timeline.add(r, states)
                losses = _mean_losses(replies)
                self.history.extend(losses)
                round_tokens = sum(rep.tokens for rep in replies.values())
                tokens_done += round_tokens
                seconds = time.perf_counter() - t0
                train_seconds += seconds
                self._split_time(replies)
                step = self.lr_steps[r + 1]
                last = r == len(self.schedule) - 1
                if losses:
                    progress.update(step, round_tokens, loss=losses[-1])
                metrics = {"active_sites": len(active), "round_seconds": seconds}
                if losses:
                    metrics["train_loss"] = losses[-1]
                if not log_due(step, last):
                    metrics = {}
                if not sync:
                    logger.log(metrics, step)
                    continue
                if metrics:
                    metrics.update(self._comm_metrics())
                due_eval, due_ckpt = has_val and eval_due(step, last), ckpt_due(step, last)
                if due_eval or due_ckpt:
                    self._apply_pending(r)
                if due_eval:
                    bpb = self._evaluate(token_bytes)
                    self.evals.append({"step": step, "val_bpb": bpb})
                    metrics["val_bpb"] = bpb
                    progress.say(f"[{label}] step {step} (round {r + 1}/{len(self.schedule)}): val bpb {bpb:.4f}")
                logger.log(metrics, step)
                if due_ckpt:
                    latest = self._checkpoint(r + 1, step)
            self._apply_pending(len(self.schedule) - 1)
            finals = self._finish_workers()
        finally:
            for m in self.pool:
                self._stop(m)
        summary = self._summary(latest, train_seconds, tokens_done, finals, precision)
        self._record(logger, summary)
        return summary

    def _round(self, r: int, active: list[Member], rp: RoundPlan, sync: bool) -> dict[str, RoundReply]:
        """Send each active site the rule's payload, kill what the fault injection says, collect the replies."""
        payloads = self.rule.configure_fit({m.name: m for m in active})
        method = "train_round" if self.diloco else "ddp_step"
        refs, futures = {}, {}
        for m in active:
            payload = payloads[m.name]
            msg = RoundMessage(steps=rp.steps[m.name], lr_step=self.lr_steps[r], send=sync, ring=len(active),
                               fresh_inner=not m.restored, grad_ring=payload.get("grad_ring"),
                               **{k: self._put(payload[k], refs) for k in ("params", "update", "grad") if k in payload})
            m.restored = False
            msg.sent_at = time.time()  # the wall clock of the link check (tasks/federated/link.py TransferLog)
            futures[m.name] = [getattr(w, method).remote(msg) for w in m.workers]
        for kill in self.cfg.kill:
            m = self.pool.members.get(kill.site)
            if kill.round == r and m is not None and m.name in futures:  # its message is in flight
                os.kill(m.pids[kill.worker], signal.SIGKILL)
        replies = self._gather(r, futures)
        for name, rep in replies.items():
            self.pool.members[name].tokens += rep.tokens
        return replies

    @staticmethod
    def _put(packet, refs: dict):
        """One object-store copy per payload and round, however many sites fetch it."""
        import ray

        if id(packet) not in refs:
            refs[id(packet)] = ray.put(packet)
        return refs[id(packet)]

    def _gather(self, r: int, futures: dict[str, list]) -> dict[str, RoundReply]:
        """The sites' replies (a site's first worker speaks for it); failures dropped, transfers logged."""
        replies, failed = _collect(futures, self.cfg.round_timeout_s, lambda name: self._stop(self.pool.members[name]))
        for name, why in failed.items():
            self.pool.members[name].fail(r, why)
        for name, reps in replies.items():
            m, lead = self.pool.members[name], reps[0]
            m.stats = lead.link if lead.link is not None else m.stats
            m.positions = [rep.position for rep in reps]
            for t in lead.transfers + ([lead.outbound] if lead.outbound is not None else []):
                self.transfers.add(t.model_s, t.started_at, t.ended_at)
        return {name: reps[0] for name, reps in replies.items()}

    def _split_time(self, replies: dict[str, RoundReply]) -> None:
        """The round waited for its slowest site: count that site's compute and link seconds."""
        if replies:
            slowest = max(replies.values(), key=lambda rep: rep.compute_s + rep.comm_s)
            self.split["compute"] += slowest.compute_s
            self.split["comm"] += slowest.comm_s

    def _exclude(self, r: int, left_out: dict[str, str], states: dict[str, str]) -> None:
        """Sites whose pseudo-gradients the outer step left out: their timeline cell and an SDC event each."""
        for n, why in left_out.items():
            states[n] = "excluded"
            self.sdc_rows.append({"step": self.lr_steps[r + 1], "rank": self.data_rank[n], "event": "outer_exclude",
                                  "detail": f"site {n} {why}"})

    def _apply_pending(self, r: int) -> None:
        """DDP: the averaged gradient of the last step, applied now (before an evaluation, a checkpoint, a site's
        rejoin or the end); the rule's copy of the parameters follows."""
        import ray

        pending = self.rule.take_pending()
        if pending is None:
            return
        ups = self.pool.up()
        msg = RoundMessage(grad=self._put(pending[0], {}), grad_ring=pending[1], compute=False, sent_at=time.time())
        self._gather(r, {m.name: [w.ddp_step.remote(msg) for w in m.workers] for m in ups})
        first = next(iter(self.pool.up()), None)
        if first is not None:  # every DDP site holds the same parameters
            self.rule.adopt(ray.get(first.workers[0].parameters.remote()))

    def _record(self, logger, summary: dict) -> None:
        """Per-site metrics and failures, and the membership timeline as CSV and PNG, into the run."""
        out = Path(self.ctx.out_dir)
        self.timeline.write_csv(out / "membership.csv")
        self.timeline.plot(out / "membership.png")
        if logger.client is None:
            return
        step = self.lr_steps[-1]
        logger.log({f"site_{name}_{key}": float(s[key]) for name, s in summary["sites"].items()
                    for key in ("tokens", "rounds", "bytes_sent", "bytes_received", "comm_seconds")}, step)
        logger.log({f"site_{name}_failures": float(s["drops"]) for name, s in summary["sites"].items()}, step)
        drops: dict[str, list[str]] = {}
        for d in summary["dropped"]:
            drops.setdefault(d["site"], []).append(f"round {d['round']}: {d['reason']}; missed rounds {d['missed']}")
        logger.tags({f"site_{name}_dropped": " | ".join(lines) for name, lines in drops.items()})
        logger.tags({f"site_{name}_rejoined": f"rounds {s['rejoined_rounds']}" for name, s in summary["sites"].items()
                     if s["rejoined_rounds"]})
        for name in ("membership.csv", "membership.png"):
            logger.client.log_artifact(logger.run_id, str(out / name))

    # ---- sites coming and going ----------------------------------------------------------------------
    def _admit(self, r: int, rp: RoundPlan, say) -> None:
        """Stop the sites that left; start the sites scheduled from this round that have no workers yet, restart
        those due back after a failure."""
        due = self.pool.admissions(r, rp.steps)
        for m in due.leaving:
            say(f"[{self.ctx.stage}] round {r}: site {m.name} leaves")
            self._stop(m)
        for m in due.starting if r > 0 else ():
            say(f"[{self.ctx.stage}] round {r}: site {m.name} joins")
        for m in due.back:
            say(f"[{self.ctx.stage}] round {r}: site {m.name} rejoins (dropped in round {m.failed_round}: {m.failure})")
        if due.starting:
            self._start(due.starting, joining=r > self.start_round or self.ctx.resume_from is not None)
        if due.back:
            self._rejoin(r, due.back)

    def _rejoin(self, r: int, members: list[Member]) -> None:
        """Restart dropped sites as fresh processes with the full global parameters; a DDP site also with the
        other replicas' optimizer state, taken after they applied the last step's gradient."""
        from ray.exceptions import RayActorError, RayTaskError

        self._apply_pending(r)
        for m in members:
            m.earlier_stats, m.stats = m.link(), {}
        try:
            failed = self._start(members, joining=True, rejoin=True)
        except (RayActorError, RayTaskError) as exc:  # a worker died before it could start
            failed = {m.site.name: f"its restart failed ({type(exc).__name__})" for m in members}
        for m in members:
            if m.name in failed:
                self._stop(m)
                m.fail(r, failed[m.name])
            else:
                self.pool.rejoined(m, r)

    def _start_states(self, m: Member, rejoin: bool) -> list[dict | None]:
        """What each of the site's workers starts from: its checkpointed state (resuming), its data position only
        (rejoining: fresh inner state), nothing (new). DDP: a copy of the replicas' optimizer state when it has
        none, since every replica must apply the same step to the same state."""
        if rejoin:
            states = [{"position": p} for p in m.positions] or [None] * m.site.workers
        else:
            states = [self.site_states.get(f"{m.site.name}-w{i}") for i in range(m.site.workers)]
        if not self.diloco and not all(s and s.get("optimizers") is not None for s in states):
            shared = self._replica_optimizers()
            if shared is not None:
                states = [{**(s or {}), "optimizers": shared} for s in states]
        return states

    def _replica_optimizers(self):
        """DDP: the optimizer state every replica holds, from a running site or else from the checkpoint."""
        import ray

        up = next(iter(self.pool.up()), None)
        if up is not None:
            return ray.get(up.workers[0].state.remote())["optimizers"]
        return next((self.site_states[k]["optimizers"] for k in sorted(self.site_states)
                     if self.site_states[k].get("optimizers") is not None), None)

    def _start(self, members: list[Member], joining: bool, rejoin: bool = False) -> dict[str, str]:
        """The sites' worker processes, spawned together (a process start costs seconds), then their models.
        Restarts (`rejoin`) report the sites whose start failed instead of raising."""
        import ray

        from tasks.common.ray_runtime import cluster_cpus
        from tasks.llm.sites.worker import SiteWorker

        states = {m.site.name: self._start_states(m, rejoin) for m in members}  # before these sites are up
        cfg, actor = self.cfg, ray.remote(SiteWorker)
        cpus = min(1.0, cluster_cpus() / self.data_world)
        threads = cfg.threads_per_worker or max(1, (os.cpu_count() or 1) // self.data_world)
        for m in members:
            site = m.site
            options = {"num_cpus": cpus, "num_gpus": 1 if self.ctx.device == "cuda" else 0,
                       "resources": dict(site.resources), "runtime_env": {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}}
            if site.node_label:
                key, _, value = site.node_label.partition("=")
                options["label_selector"] = {key: value}
            m.workers = [actor.options(**options).remote(cfg, self.source, site, i, self.data_rank[site.name] + i,
                                                        self.data_world, self.ctx.device, self.ctx.init_checkpoint)
                         for i in range(site.workers)]
        started = {}
        for m in members:
            m.pids = ray.get([w.pid.remote() for w in m.workers])
            url = None
            if m.site.workers > 1:
                host, port = ray.get(m.workers[0].address.remote())
                url = f"tcp://{host}:{port}"
            mine = states[m.site.name]
            started[m.site.name] = [w.start.remote(url, threads, mine[i]) for i, w in enumerate(m.workers)]
            m.restored = all(s is not None and s.get("optimizers") is not None for s in mine)
            m.version = -1 if joining else self.rule.version
        if not rejoin:
            ray.get([ref for refs in started.values() for ref in refs])
            return {}
        return _collect(started, cfg.round_timeout_s, lambda name: None)[1]

    def _stop(self, m: Member) -> None:
        import ray

        for w in m.workers:
            ray.kill(w)
        m.workers = []

    def _finish_workers(self) -> dict[str, list[dict]]:
        import ray

        finals = {}
        for m in self.pool.up():
            finals[m.name] = ray.get([w.finish.remote() for w in m.workers])
            m.stats = finals[m.name][0]["link"]
        return finals

    def _replicas_identical(self, finals: dict[str, list[dict]]) -> bool | None:
        """DDP: whether every worker of every site ends with bit-identical parameters (DiLoCo's differ by design)."""
        if self.diloco:
            return None
        return len({w["params_sha256"] for per_site in finals.values() for w in per_site}) <= 1

    # ---- evaluation, checkpoints, summary --------------------------------------------------------
    def _evaluate(self, token_bytes) -> float:
        unflatten_into(list(self.model.parameters()), self.rule.params.detach())
        return bits_per_byte(self.model, self.source.val_batches(self.cfg.eval_tokens), token_bytes, self.autocast)

    def _checkpoint(self, next_round: int, step: int) -> Path:
        """Global weights and outer state, and every up site's inner state by name; atomically renamed."""
        import ray

        root = Path(self.ctx.out_dir) / "checkpoints"
        tmp = staging_folder(root, step)
        shutil.rmtree(tmp, ignore_errors=True)
        states = {"outer": self.rule.state_dict()}
        for m in self.pool.up():
            for i, state in enumerate(ray.get([w.state.remote() for w in m.workers])):
                states[f"site-{m.name}-w{i}"] = state
        unflatten_into(list(self.model.parameters()), self.rule.params.detach())
        meta = checkpoint_meta(self.cfg, self.ctx, self.source, self.init_meta, step=step, history=self.history,
                               evals=self.evals, comm=self._comm_metrics(), world=self.data_world, round=next_round,
                               sync_rounds=self.sync_rounds, states=sorted(states), sites=list(self.pool.members),
                               timeline=self.timeline.rows)
        save_checkpoint(tmp, self.model, states, meta)
        return publish_checkpoint(root, step)

    def _restore(self, folder: Path) -> None:
        meta = read_meta(folder)
        load_weights(self.model, folder)
        self.rule = self._rule()
        if self.diloco:
            self.rule.load_state_dict(load_state(folder / "outer.pt"))
        for name in meta["states"]:
            if name.startswith("site-"):
                self.site_states[name[5:]] = load_state(folder / f"{name}.pt")
        self.start_round, self.history, self.evals = meta["round"], meta["history"], meta["evals"]
        self.sync_rounds = meta["sync_rounds"]
        self.timeline.rows = [{"round": row["round"], **{s: row.get(s, "absent") for s in self.timeline.sites}}
                              for row in meta["timeline"]]

    def _comm_metrics(self) -> dict[str, float]:
        """What the busiest site has moved over its link so far, as the summary reports it."""
        stats = [m.link() for m in self.pool]
        return {"comm_bytes": max((s.get("bytes_sent", 0) + s.get("bytes_received", 0) for s in stats), default=0),
                "comm_seconds": max((s.get("seconds", 0.0) for s in stats), default=0.0),
                "sync_rounds": self.sync_rounds}

    def _summary(self, latest: Path | None, train_seconds: float, tokens: int, finals: dict, precision: str) -> dict:
        unflatten_into(list(self.model.parameters()), self.rule.params.detach())
        model_dir = write_final_model(self.ctx.out_dir, self.model,
                                      read_meta(latest) if latest else {"step": self.lr_steps[-1]})
        sites, dropped = {}, []
        for m in self.pool:
            name = m.name
            link = m.link()
            missed = self.timeline.rounds_in(name, "missed")
            for d in m.drops:  # the rounds it missed until it was back, or dropped again
                until = min((x for x in m.rejoins + [e["round"] for e in m.drops] if x > d["round"]),
                            default=len(self.schedule))
                dropped.append({"site": name, "round": d["round"], "reason": d["reason"],
                                "missed": [r for r in missed if d["round"] < r < until]})
            sites[name] = {"workers": m.site.workers, "tokens": m.tokens,
                           "rounds": len(self.timeline.rounds_in(name, "synced", "local", "excluded")),
                           "failed_round": m.failed_round, "failure": m.failure, "drops": len(m.drops),
                           "rejoined_rounds": list(m.rejoins), "missed_rounds": missed,
                           "bytes_sent": link.get("bytes_sent", 0), "bytes_received": link.get("bytes_received", 0),
                           "transfers": link.get("transfers", 0), "comm_seconds": link.get("seconds", 0.0)}
        events = [row for per_site in finals.values() for w in per_site for row in w.get("sdc_events", [])]
        summary = run_summary(
            self.cfg, self.ctx, self.model, workers=self.data_world, steps=self.steps, accum=self.accum, tokens=tokens,
            history=self.history, evals=self.evals, rate=tokens / train_seconds if train_seconds > 0 else 0.0,
            dtype=torch_dtype(precision), precision=precision,
            comm_bytes=max((s["bytes_sent"] + s["bytes_received"] for s in sites.values()), default=0),
            comm_seconds=max((s["comm_seconds"] for s in sites.values()), default=0.0),
            sync_rounds=self.sync_rounds, train_seconds=train_seconds, model_dir=model_dir,
            rounds=len(self.schedule),
            planned_tokens=self.steps * self.accum * self.data_world * batch_tokens(self.source, self.cfg),
            compute_seconds=self.split["compute"], link_seconds=self.split["comm"],
            overhead_seconds=train_seconds - self.split["compute"] - self.split["comm"],
            **self.transfers.summary(), ddp_replicas_identical=self._replicas_identical(finals),
            sites=sites, timeline=self.timeline.rows, dropped=dropped)
        if self.cfg.sdc.inject.enabled or self.cfg.sdc.guard.enabled:
            summary["sdc_events"] = events + self.sdc_rows
            summary["sdc_guard_seconds"] = max((w.get("sdc_guard_seconds", 0.0) for ws in finals.values() for w in ws),
                                               default=0.0)
        return summary


def _collect(futures: dict[str, list], timeout_s: float, stop) -> tuple[dict[str, list], dict[str, str]]:
    """Wait for every site's workers; a site whose worker dies, raises or is still busy at the deadline fails
    (and is stopped at once, so that its other workers do not hang in their group). (replies, failures)."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    owner = {ref: (name, i) for name, refs in futures.items() for i, ref in enumerate(refs)}
    replies = {name: [None] * len(refs) for name, refs in futures.items()}
    failed: dict[str, str] = {}
    pending, deadline = list(owner), time.monotonic() + timeout_s
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            for ref in pending:
                name = owner[ref][0]
                if name not in failed:
                    failed[name] = f"missed the round deadline ({timeout_s:g} s)"
                    stop(name)
            break
        name, i = owner[ready[0]]
        try:
            replies[name][i] = ray.get(ready[0])
            if isinstance(replies[name][i], RoundReply) and replies[name][i].outbound is not None:
                replies[name][i].outbound.ended_at = time.time()  # the far end of its transfer to the hub
        except RayActorError:
            why = "its worker process died"
        except RayTaskError as exc:
            why = f"raised {type(exc.cause).__name__}: {str(exc.cause).splitlines()[0] if str(exc.cause) else ''}"
        else:
            continue
        if name not in failed:
            failed[name] = why
            stop(name)
    return {n: r for n, r in replies.items() if n not in failed}, failed


def outer_selection(replies: dict[str, RoundReply], guard) -> tuple[list[str], dict[str, str]]:
    """The sites whose pseudo-gradients the outer step averages, and why each other reporting site is left out:
    a non-finite one always; with the SDC guard on, one whose norm per token exceeds `guard.outer_ratio` x the
    others' median. Per token, since a pseudo-gradient grows with the steps it spans: a site that trained longer
    (curtailment) is not taken for a corrupt one."""
    names = [n for n in replies if replies[n].packet is not None]
    per_token = {n: replies[n].norm / max(1, replies[n].delta_tokens) for n in names}
    kept = [n for n in names if math.isfinite(per_token[n])]
    if guard.enabled and len(kept) > 1:
        kept = [kept[i] for i in healthy_sites([per_token[n] for n in kept], guard.outer_ratio)]
    left_out = {n: (f"pseudo-gradient norm {replies[n].norm:.6g} ({per_token[n]:.3g} per token)"
                    if math.isfinite(per_token[n]) else f"pseudo-gradient not finite (norm {replies[n].norm})")
                for n in names if n not in kept}
    return kept, left_out


def _mean_losses(replies: dict[str, RoundReply]) -> list[float]:
    """Per step of the round, the token-weighted mean loss over the sites that reported it."""
    per_step: dict[int, list[tuple[float, int]]] = {}
    for rep in replies.values():
        n = rep.tokens / max(1, len(rep.losses))
        for i, loss in enumerate(rep.losses):
            per_step.setdefault(i, []).append((loss, n))
    return [sum(v * n for v, n in pairs) / sum(n for _, n in pairs) for _, pairs in sorted(per_step.items())]


def _hardware(device: str) -> dict[str, str]:
    from tasks.common.precision import hardware_tags

    return {**hardware_tags(), "device": device_name(device)}


def run_on_hub(cfg: PretrainConfig, source: BatchSource, ctx, schedule: list[RoundPlan] | None = None) -> dict:
    from tasks.common.ray_runtime import ensure_ray

    ensure_ray()
    return Hub(cfg, source, ctx, schedule).run()
