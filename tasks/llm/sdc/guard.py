"""The SDC study's detector on the would-be optimizer update, recompute on a flag, DiLoCo's outer rule.

R_t = max over parameter tensors of the RMS of the update the optimizer is about to apply, derived
from its state and the (clipped) gradients without stepping (Adam's from its raw moment estimates,
as the study: no bias correction); J_t = |R_t - R_{t-1}|; mu = the running mean of J over the
guard's first `mean_steps` (1000), then frozen; dG = max(0, |g_t| - |g_{t-1}|) of the gradient norm
before clipping. A step is flagged when the gradient norm or R is not finite, or, from step
`active_from` (10), when dG > 0 and J_t > mu / (alpha sqrt(dG)). A flagged step's R and norm never
enter mu or the next step's differences.

Muon's orthogonalised update has a nearly constant RMS, so its matrices stand in with the update
before orthogonalisation (the Nesterov momentum Muon is about to orthogonalise, times its lr),
which moves with the gradients as Adam's update does. Each optimizer kind keeps its own R and mu:
their updates differ in scale by orders of magnitude, so one max would only ever hear the largest.
Any kind firing flags the step.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from tasks.common.errors import InputError
from tasks.llm.config import SdcGuardConfig
from tasks.llm.model.optim import Muon
from tasks.llm.sdc.events import EventLog


def _updates(opt: torch.optim.Optimizer, group: dict, params: list[torch.Tensor], scale: float) -> list[torch.Tensor]:
    """The updates `opt` would apply to `params` (one group) with gradients `scale` x .grad, without the lr;
    Muon's before orthogonalisation. Foreach ops: a handful of kernel calls whatever the number of tensors."""
    grads = torch._foreach_mul([p.grad for p in params], scale)
    state = [opt.state.get(p, {}) for p in params]
    if isinstance(opt, Muon):  # Nesterov: g.lerp(buf.lerp(g, 1 - mom), mom) = (1 - mom^2) g + mom^2 buf
        mom = group["momentum"]
        a, b = (1 - mom * mom, mom * mom) if group["nesterov"] else (1 - mom, mom)
        updates = torch._foreach_mul(grads, a)
        if all(state):
            torch._foreach_add_(updates, [s["momentum_buffer"] for s in state], alpha=b)
        return updates
    if isinstance(opt, torch.optim.AdamW):
        b1, b2 = group["betas"]  # the raw moments m, v after this step's gradient: m / (sqrt(v) + eps)
        m = torch._foreach_lerp([s["exp_avg"] if s else torch.zeros_like(g) for s, g in zip(state, grads)], grads, 1 - b1)
        v = torch._foreach_mul([s["exp_avg_sq"] if s else torch.zeros_like(g) for s, g in zip(state, grads)], b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        torch._foreach_sqrt_(v)
        torch._foreach_add_(v, group["eps"])
        updates = torch._foreach_div(m, v)
        if group["weight_decay"]:
            torch._foreach_add_(updates, params, alpha=group["weight_decay"])
        return updates
    if isinstance(opt, torch.optim.SGD) and not group["momentum"]:
        return grads
    raise InputError(f"sdc.guard has no update statistic for {type(opt).__name__}")


@torch.no_grad()
def update_rms(opt: torch.optim.Optimizer, scale: float) -> float:
    """Max over `opt`'s tensors of the RMS of its next update, with the gradients times `scale` (clipping)."""
    rms = []
    for group in opt.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            lr = [group["lr"] / p.numel() ** 0.5 * (max(1.0, p.shape[-2] / p.shape[-1]) ** 0.5 if isinstance(opt, Muon)
                                                     else 1.0) for p in params]
            rms.append((torch.stack(torch._foreach_norm(_updates(opt, group, params, scale))) * torch.tensor(lr)).max())
    return torch.stack(rms).max().item() if rms else 0.0


class JumpDetector:
    """The rule on one statistic R: its jump against the running mean jump mu, the more so the more |g| grew."""

    def __init__(self, alpha: float, active_from: int, mean_steps: int):
        self.alpha, self.active_from, self.mean_steps = alpha, active_from, mean_steps
        self.prev: float | None = None
        self.jump_sum, self.jumps = 0.0, 0

    @property
    def mu(self) -> float | None:
        return self.jump_sum / self.jumps if self.jumps else None

    def fires(self, t: int, r: float, grew: float) -> bool:
        if self.prev is None or t < self.active_from or grew <= 0 or not self.jumps:
            return False
        return abs(r - self.prev) > self.mu / (self.alpha * math.sqrt(grew))

    def accept(self, t: int, r: float) -> None:
        """`r` was the statistic of step `t`, which was applied unflagged."""
        if self.prev is not None and t <= self.mean_steps:
            self.jump_sum, self.jumps = self.jump_sum + abs(r - self.prev), self.jumps + 1
        self.prev = r


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any."""
    t = torch.tensor([float(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def healthy_sites(norms: list[float], ratio: float) -> list[int]:
    """DiLoCo's outer rule: sites whose pseudo-gradient norm is finite and at most `ratio` x the median of the
    other finite sites' norms (leave-one-out, so that it also decides between two sites)."""
    finite = [i for i, n in enumerate(norms) if math.isfinite(n)]
    return [i for i in finite if len(finite) < 2 or norms[i] <= ratio * statistics.median(norms[j] for j in finite if j != i)]


class UpdateRule:
    """The study's rule over each optimizer kind's R and the gradient norm: which statistics fire at step t.

    The guard decides with it; the benchmark replays recorded statistics through it at other alphas."""

    def __init__(self, alpha: float, active_from: int, mean_steps: int, kinds: list[str]):
        self.detectors = {kind: JumpDetector(alpha, active_from, mean_steps) for kind in kinds}
        self.prev_norm: float | None = None

    def why(self, t: int, norm: float, stats: dict[str, float]) -> str:
        """Why step t is flagged ('' when it is not)."""
        if not math.isfinite(norm):
            return f"grad norm {norm}"
        grew = max(0.0, norm - self.prev_norm) if self.prev_norm is not None else 0.0
        fired = [f"{name} R {r:.4g} after {_num(self.detectors[name].prev)}" for name, r in stats.items()
                 if not math.isfinite(r) or self.detectors[name].fires(t, r, grew)]
        return f"{', '.join(fired)}; grad norm {norm:.4g} after {_num(self.prev_norm)}" if fired else ""

    def accept(self, t: int, norm: float, stats: dict[str, float]) -> None:
        for name, r in stats.items():
            self.detectors[name].accept(t, r)
        self.prev_norm = norm

    def forget(self) -> None:
        """The last accepted step is undone (a rollback): the next one has nothing to differ from."""
        for detector in self.detectors.values():
            detector.prev = None
        self.prev_norm = None


class StepGuard:
    """Reviews each step's gradients before the optimizers apply them; recomputes a flagged step once.

    In DDP (`coordinated`) the flag is all-reduced before the gradients are, so any rank's flag makes
    every rank recompute, and a recomputed step costs no gradient all-reduce of its corrupted first try.
    With `on_flag: record` a flag is only recorded and the step applied, and every step's statistics
    go to the log's trace (to calibrate alpha on a model before letting the guard act)."""

    def __init__(self, cfg: SdcGuardConfig, optimizers: list[torch.optim.Optimizer], model: nn.Module, grad_clip: float,
                 coordinated: bool, log: EventLog):
        self.cfg, self.optimizers, self.grad_clip, self.coordinated = cfg, optimizers, grad_clip, coordinated
        self.log, self.record = log, log.add
        self.params = list(model.parameters())
        kinds = [type(o).__name__.lower() for o in optimizers]
        self.rule = UpdateRule(cfg.alpha, cfg.active_from, cfg.mean_steps, kinds)
        self.t, self.rolled_back = 0, set()

    def review(self, step: int, compute: Callable[[], tuple], can_roll_back: bool) -> tuple[str, tuple]:
        """Run `compute` (forward and backward), again if flagged: ("step" | "skip" | "rollback", its result)."""
        self.t += 1
        result = compute()
        for attempt in range(2):
            flagged, why, norm, stats = self._check()
            if self.cfg.on_flag == "record":
                self.log.trace.append({"step": step, "grad_norm": norm, **stats})
            if not flagged:
                self.rule.accept(self.t, norm, stats)
                return "step", result
            self.record(step, "flag", why or "another worker flagged")
            if self.cfg.on_flag == "record":
                return "step", result
            if attempt == 0:
                self.record(step, "recompute")
                for p in self.params:
                    p.grad = None
                result = compute()
        if self.cfg.on_repeat == "rollback" and can_roll_back and step not in self.rolled_back:
            self.rolled_back.add(step)
            self.record(step, "rollback")
            self.rule.forget()
            return "rollback", result
        self.record(step, "skip")
        return "skip", result

    def _check(self) -> tuple[bool, str, float, dict[str, float]]:
        start = time.perf_counter()
        norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None]).item()
        stats: dict[str, float] = {}
        if math.isfinite(norm):
            scale = min(1.0, self.grad_clip / (norm + 1e-6)) if self.grad_clip > 0 else 1.0  # as clip_grad_norm_
            for opt in self.optimizers:
                name = type(opt).__name__.lower()
                stats[name] = max(stats.get(name, 0.0), update_rms(opt, scale))
        why = self.rule.why(self.t, norm, stats)
        flagged = any_rank(bool(why)) if self.coordinated else bool(why)
        self.log.seconds += time.perf_counter() - start
        return flagged, why, norm, stats
