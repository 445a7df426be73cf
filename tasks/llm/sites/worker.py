"""One worker of one site, as a Ray actor: a model replica, its inner optimizers, its data and its link.

The hub (tasks/llm/sites/hub.py) drives it one round at a time. A message may carry the full global
parameters (a site that joins, rejoins or resumes), an outer update to add to the last global
parameters it had (DiLoCo), or an averaged gradient to apply (DDP across sites); each is an
object-store reference that the worker fetches itself, so the fetch can be timed and paced by
the site's link. Workers of one site are data-parallel: one torch.distributed group per site
averages their gradients every step. Only a site's first worker talks to the hub; its link
stats are the site's. DDP across sites moves its gradients through the hub, but its link is
charged what a ring all-reduce over the sites would move (tasks/federated/link.py `ring_allreduce`).
Every reply says how the call's time split into compute and link, and stamps each transfer's
ends on the wall clock for the hub's check of the link model.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from dataclasses import asdict
from datetime import timedelta

import torch
import torch.distributed as dist

from tasks.federated.link import Link, ring_allreduce
from tasks.federated.messages import RoundMessage, RoundReply, Transfer
from tasks.federated.wire import Encoder, Packet, decode, encode, flatten, unflatten_into
from tasks.llm.config import PretrainConfig, SiteConfig
from tasks.llm.data.batches import BatchSource
from tasks.llm.train.ddp import CommStats, allreduce_gradients
from tasks.llm.train.device import dist_backend
from tasks.llm.model.optim import build_optimizers, lr_multiplier, set_lr
from tasks.llm.sdc.attach import attach as attach_sdc
from tasks.llm.train.build import plan_steps, prepare_model
from tasks.llm.train.step import forward_backward, take_step


class SiteWorker:
    def __init__(self, cfg: PretrainConfig, source: BatchSource, site: SiteConfig, local_rank: int, data_rank: int,
                 data_world: int, device: str, init_checkpoint: str | None):
        self.cfg, self.source, self.site, self.device = cfg, source, site, device
        self.local_rank, self.lead = local_rank, local_rank == 0
        self.data_rank, self.data_world, self.init_checkpoint = data_rank, data_world, init_checkpoint
        self.link = Link(site.link)
        self.intra = CommStats()
        self.encoder = Encoder(cfg.diloco.transfer_dtype, cfg.diloco.int8_block, cfg.diloco.error_feedback)

    def pid(self) -> int:
        return os.getpid()

    def address(self) -> tuple[str, int]:
        import ray

        from tasks.common.ports import free_port

        return ray.util.get_node_ip_address(), free_port()

    def start(self, dist_url: str | None, threads: int, state: dict | None) -> None:
        """Join the site's group, build the model (seeded: the same initial parameters at every site) and
        the inner optimizers; restore what `state` holds: optimizer state (resuming, or a DDP replica's copy),
        data position, error-feedback residual."""
        from tasks.common.precision import resolve_precision, torch_dtype

        torch.set_num_threads(threads)
        if self.site.workers > 1:
            dist.init_process_group(dist_backend(self.device), init_method=dist_url, rank=self.local_rank,
                                    world_size=self.site.workers, timeout=timedelta(seconds=self.cfg.round_timeout_s))
        cfg = self.cfg
        self.steps, self.accum = plan_steps(cfg, self.source)
        self.model, _ = prepare_model(cfg, self.source, self.init_checkpoint, self.device)
        self.params = list(self.model.parameters())
        precision = resolve_precision(cfg.precision, self.device)
        self.autocast = precision == "bf16"
        self.optimizers = build_optimizers(self.model, cfg.optim, precision)
        self.sdc_log, self.injector, self.guard = attach_sdc(self.model, self.optimizers, cfg, self.data_rank,
                                                             torch_dtype(precision), shared=self.site.workers > 1)
        state = state or {}
        for opt, saved in zip(self.optimizers, state.get("optimizers") or []):
            opt.load_state_dict(saved)
        self.position = state.get("position")
        self.encoder.residual = state.get("residual")
        self.batches = self.source.batches(self.data_rank, self.data_world, self.position)
        self.anchor, self.tokens_since_anchor = flatten(self.params), 0

    def train_round(self, msg: RoundMessage) -> RoundReply:
        """DiLoCo: take the hub's parameters or update, run `steps` inner steps, send the pseudo-gradient if asked."""
        began = self._begin()
        self._receive(msg)
        losses, tokens = [], 0
        for i in range(msg.steps):
            loss, n = self._step(msg.lr_step + i)
            losses.append(loss)
            tokens += n
        self.tokens_since_anchor += tokens * self.site.workers
        reply = RoundReply(losses=losses, tokens=tokens * self.site.workers)
        if msg.send and self.lead:  # its pseudo-gradient spans every round since its last global parameters
            delta = self.anchor - flatten(self.params)
            self._send(reply, self.encoder(delta))
            reply.norm, reply.delta_tokens = torch.linalg.vector_norm(delta).item(), self.tokens_since_anchor
        return self._reply(reply, began)

    def ddp_step(self, msg: RoundMessage) -> RoundReply:
        """DDP across sites: apply the averaged gradient of the last step, then compute this step's gradient.

        `ring` / `grad_ring`: how many sites this step's all-reduce / the last one's spans (what the link pays)."""
        began = self._begin()
        self._receive(msg)
        if msg.grad is not None:
            grad = self._fetch(msg.grad, msg.sent_at, msg.grad_ring)
            for p in self.params:
                p.grad = torch.zeros_like(p)
            unflatten_into([p.grad for p in self.params], grad)
            if self.cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
            for opt in self.optimizers:
                opt.step()
            self.model.zero_grad(set_to_none=True)
        if not msg.compute:
            return self._reply(RoundReply(), began)
        self._set_lr(msg.lr_step)
        micro = [next(self.batches) for _ in range(self.accum)]
        self.position = micro[-1][2]
        loss, n = forward_backward(self.model, micro, self.accum, self.autocast, self.device)
        if self.site.workers > 1:
            allreduce_gradients(self.model, self.intra)
        reply = RoundReply(losses=[loss / self.accum], tokens=n * self.site.workers)
        if self.lead:
            self._send(reply, encode(flatten(p.grad for p in self.params), "fp32"), msg.ring)
        return self._reply(reply, began)

    def parameters(self) -> torch.Tensor:
        return flatten(self.params).cpu()

    def state(self) -> dict:
        """What a checkpoint keeps of this worker: inner optimizer state, data position, error-feedback residual."""
        return {"optimizers": [o.state_dict() for o in self.optimizers], "position": self.position,
                "residual": self.encoder.residual}

    def finish(self) -> dict:
        """Link counts and SDC events, and a digest of the parameters (DDP replicas must all agree)."""
        events = self.sdc_log.summary() if self.sdc_log is not None else {}
        digest = hashlib.sha256(flatten(self.params).numpy().tobytes()).hexdigest()
        return {"link": asdict(self.link.stats), "intra_site_bytes": self.intra.bytes, "params_sha256": digest,
                **events}

    def _step(self, step: int) -> tuple[float, int]:
        self._set_lr(step)
        micro = [next(self.batches) for _ in range(self.accum)]
        self.position = micro[-1][2]
        allreduce = functools.partial(allreduce_gradients, self.model, self.intra) if self.site.workers > 1 else None
        _, loss, tokens = take_step(self.model, self.optimizers, micro, step, accum=self.accum, autocast=self.autocast,
                                    device=self.device, clip=self.cfg.optim.grad_clip, injector=self.injector,
                                    guard=self.guard, allreduce=allreduce)
        return loss / self.accum, tokens

    def _set_lr(self, step: int) -> None:
        set_lr(self.optimizers, lr_multiplier(step, self.steps, self.cfg.optim))

    def _receive(self, msg: RoundMessage) -> None:
        """Full parameters (with fresh inner state unless resuming: optimizer state and error-feedback residual,
        which belonged to parameters this site no longer holds) or an outer update."""
        if msg.params is not None:
            self.anchor = self._fetch(msg.params, msg.sent_at)
            if msg.fresh_inner:
                for opt in self.optimizers:
                    opt.state.clear()
                self.encoder.residual = None
        elif msg.update is not None:
            self.anchor = self.anchor + self._fetch(msg.update, msg.sent_at)
        else:
            return
        unflatten_into(self.params, self.anchor)
        self.tokens_since_anchor = 0

    def _begin(self) -> float:
        self.comm_s, self.transfers = 0.0, []
        return time.perf_counter()

    def _reply(self, reply: RoundReply, began: float) -> RoundReply:
        """`reply` with the call's compute and link seconds, data position, transfers and link counts so far."""
        reply.compute_s, reply.comm_s = time.perf_counter() - began - self.comm_s, self.comm_s
        reply.position = self.position
        if self.lead:
            reply.transfers, reply.link = self.transfers, asdict(self.link.stats)
        return reply

    def _charge(self, nbytes: int, ring: int | None) -> tuple[int, int]:
        """(bytes, latency hops) the link pays for a message of `nbytes`: itself, or its share of a ring all-reduce."""
        return (nbytes, 1) if ring is None else ring_allreduce(nbytes, ring)

    def _fetch(self, ref, sent_at: float | None, ring: int | None = None) -> torch.Tensor:
        """A message from the hub, paced by the site's link; `sent_at` is when the hub dispatched it (wall clock)."""
        import ray

        started = time.perf_counter()
        packet: Packet = ray.get(ref)
        if self.lead:
            nbytes, hops = self._charge(packet.nbytes, ring)
            self.link.pace(started, nbytes, "receive", hops)
            self.comm_s += time.perf_counter() - started
            if sent_at is not None:
                self.transfers.append(Transfer(self.link.min_seconds(nbytes, hops), sent_at, time.time()))
        return decode(packet)

    def _send(self, reply: RoundReply, packet: Packet, ring: int | None = None) -> None:
        """The site's message to the hub, paced by its link, into `reply`; the hub stamps its arrival."""
        wall, started = time.time(), time.perf_counter()
        nbytes, hops = self._charge(packet.nbytes, ring)
        self.link.pace(started, nbytes, "send", hops)
        self.comm_s += time.perf_counter() - started
        reply.packet, reply.outbound = packet, Transfer(self.link.min_seconds(nbytes, hops), wall)
