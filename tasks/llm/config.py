"""Typed configuration of the LLM pipeline (params.yaml section `llm`, one subsection per stage).

Each stage validates its own subsection: `load_config(PretrainConfig, "llm.pretrain", {"depth": 6})`
reads `params.yaml[llm][pretrain]` plus dotted overrides relative to that stage, so
`seedflow llm pretrain --set depth=6` and a Prefect parameter `overrides={"depth": 6}` mean the same.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.common.config import Overrides, StrictModel
from tasks.common.errors import InputError
from tasks.federated.config import DilocoConfig, LinkConfig

Mode = Literal["single", "ddp", "diloco"]
Precision = Literal["auto", "bf16", "fp32"]  # auto: bf16 only where it is fast (tasks/common/precision.py)
Device = Literal["auto", "cpu", "cuda"]  # auto: CUDA when present


class TokenizerConfig(StrictModel):
    corpus: list[str] = Field(default_factory=lambda: ["text/tinyshakespeare.txt"],
                              description="text/JSONL/Parquet files or folders; relative paths resolve against the data dir")
    vocab_size: int = Field(4096, ge=256 + 9)
    val_fraction: float = Field(0.05, gt=0, lt=1)
    max_chars: int = Field(0, ge=0, description="0 = whole corpus")
    out_dir: str = "results/llm/tokens"
    experiment: str = "llm-tokenize"
    digits: int = Field(3, ge=1, description="longest digit run kept in one pre-token (GPT-4: 3)")
    doc_chars: int = Field(4000, ge=100, description="plain text is cut into documents of about this size")
    text_field: str = Field("text", description="JSONL field / Parquet column holding the text")
    shard_tokens: int = Field(1 << 24, ge=1024, description="tokens per shard file")
    download_shards: int = Field(0, ge=0, description="FineWeb-Edu parquet shards to fetch and add (needs internet)")
    download_dir: str = ".cache/fineweb-edu"
    download_timeout_s: float = Field(10.0, gt=0)
    generated_chars: int = Field(400_000, ge=1000, description="size of the corpus `generated` (used when no data dir)")
    seed: int = 0


class OptimConfig(StrictModel):
    kind: Literal["muon", "adamw", "sgd"] = Field("muon", description="muon: Muon for matrices + AdamW for embedding/head")
    matrix_lr: float = Field(0.02, gt=0, description="Muon lr of hidden matrices")
    embedding_lr: float = Field(0.2, gt=0)
    unembedding_lr: float = Field(0.004, gt=0)
    lr: float = Field(1e-3, gt=0, description="lr of every parameter when kind is adamw or sgd")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.8, 0.95)
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    warmup_frac: float = Field(0.0, ge=0, le=1)
    warmdown_frac: float = Field(0.2, ge=0, le=1, description="final fraction of steps with linear decay")
    final_lr_frac: float = Field(0.0, ge=0, le=1)


BitClass = Literal["sign", "exponent", "exp_high", "exp_low", "mantissa"]
SdcStage = Literal["forward", "input", "backward", "optimizer"]


class SdcInjectConfig(StrictModel):
    """Silent-data-corruption fault injection (the SDC study's schedule). Off: no hook exists at all."""

    enabled: bool = False
    p: float = Field(0.02, ge=0, le=1, description="chance that a step from start_step on starts a fault event")
    start_step: int = Field(10, ge=1, description="first step that may start an event")
    duration: tuple[int, int] = Field((1, 5), description="an event lasts a uniform [min, max] steps")
    max_events: int = Field(0, ge=0, description="events per run; 0 = no limit, 1 = the study's single-event trials")
    bit_class: BitClass = Field("exp_high", description="sign | exponent (any exponent bit) | exp_high | exp_low "
                                                        "(top / bottom 3 exponent bits) | mantissa")
    bits: list[int] = Field(default_factory=list, description="bit positions to flip together; [] = one drawn from bit_class")
    stage: SdcStage = Field("forward", description="a Linear's output | an element of its input as its matmul reads it | "
                                                   "the gradient flowing into its output | its weight's optimizer state")
    layer: str = Field("", description="a Linear's module name, e.g. transformer.h.0.mlp.c_fc; '' = a random one per event")
    rank: int = Field(0, ge=0, description="the worker whose hardware is faulty")
    persistent: bool = Field(False, description="a stuck unit: the fault hits the recompute of its step too")
    seed: int = 0

    @model_validator(mode="after")
    def ordered(self) -> SdcInjectConfig:
        if not 1 <= self.duration[0] <= self.duration[1]:
            raise ValueError(f"duration {list(self.duration)} must be [min, max] with 1 <= min <= max")
        return self


class SdcGuardConfig(StrictModel):
    """The SDC study's detector on the would-be optimizer update, and recompute on a flag."""

    enabled: bool = False
    alpha: float = Field(0.05, gt=0, description="flag when J_t > mu / (alpha * sqrt(dG))")
    active_from: int = Field(10, ge=2, description="the guard's step from which the rule applies")
    mean_steps: int = Field(1000, ge=1, description="mu is the running mean of J over the guard's first steps, "
                                                    "then frozen")
    on_flag: Literal["recompute", "record"] = Field("recompute", description="recompute a flagged step, or only "
                                                                            "record the flag and apply the step")
    on_repeat: Literal["skip", "rollback"] = Field("skip", description="a recomputed step flagged again: skip it, "
                                                                       "or roll back to the last checkpoint")
    outer_ratio: float = Field(2.0, gt=1, description="DiLoCo: a site whose pseudo-gradient norm per token exceeds "
                                                      "this times the other sites' median sits the round out")


class SdcConfig(StrictModel):
    inject: SdcInjectConfig = SdcInjectConfig()
    guard: SdcGuardConfig = SdcGuardConfig()


class SiteConfig(StrictModel):
    """A group of data-parallel workers at one place; sites meet only at the hub, over their links."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    workers: int = Field(1, ge=1)
    resources: dict[str, float] = Field(default_factory=dict, description="Ray custom resources each worker asks for "
                                                                          "(a site's nodes on a real cluster)")
    node_label: str = Field("", description="'key=value': Ray node label the site's workers are placed on")
    link: LinkConfig = LinkConfig()
    join_round: int = Field(0, ge=0, description="the round at whose start the site joins")
    leave_round: int = Field(0, ge=0, description="the round before which the site leaves; 0 = stays to the end")
    rejoin_after: int = Field(0, ge=0, description="rounds after a drop (death, error, deadline) at whose boundary "
                                                   "the site restarts with the global parameters; 0 = stays out")


def parse_sites(text: str) -> list[dict]:
    """`--sites a,b:2@100/50`: comma-separated `name[:workers][@mbit_per_s[/latency_ms]]`."""
    sites = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        head, _, link = item.partition("@")
        name, _, workers = head.partition(":")
        bandwidth, _, latency = link.partition("/")
        try:
            site = {"name": name, "workers": int(workers or 1),
                    "link": {"bandwidth_mbps": float(bandwidth or 0), "latency_ms": float(latency or 0)}}
        except ValueError:
            raise InputError(f"--sites item {item!r} is not name[:workers][@mbit_per_s[/latency_ms]], "
                             "e.g. a:2@100/50") from None
        sites.append(site)
    return sites


class KillConfig(StrictModel):
    """Fault injection: SIGKILL one worker process of a site in the middle of a round."""

    site: str
    round: int = Field(ge=0)
    worker: int = Field(0, ge=0)


class PretrainConfig(StrictModel):
    """Model size, batch, budget, mode and everything else of a training stage."""

    tokens_dir: str = Field("results/llm/tokens", description="token shards written by `seedflow llm tokenize`")
    out_dir: str = "results/llm/pretrain"
    experiment: str = "llm-pretrain"
    run_name: str = ""
    seed: int = 0
    # model
    depth: int = Field(4, ge=1, description="layers; width = 64 x depth")
    sequence_len: int = Field(256, ge=8)
    n_kv_head: int = Field(0, ge=0, description="grouped-query attention: 0 = as many as query heads")
    # batch and budget
    device_batch_size: int = Field(8, ge=1, description="sequences per forward pass per worker")
    total_batch_tokens: int = Field(0, ge=0, description="global tokens per optimizer step; 0 = one forward per worker")
    steps: int = Field(200, ge=0, description="optimizer steps; ignored when token_budget > 0")
    token_budget: int = Field(0, ge=0, description="total training tokens; 0 = use steps")
    # distribution
    mode: Mode = "single"
    workers: int = Field(2, ge=1, description="Ray workers for ddp / diloco without sites (diloco: one site each)")
    sites: list[SiteConfig] = Field(default_factory=list, description="[] = `workers` on one machine, unemulated links")
    round_timeout_s: float = Field(600.0, gt=0, description="a site that has not reported by then is dropped")
    kill: list[KillConfig] = Field(default_factory=list, description="fault injection: workers to kill -9 mid-round")
    device: Device = "auto"
    threads_per_worker: int = Field(0, ge=0, description="torch threads per worker; 0 = cores / workers")
    diloco: DilocoConfig = DilocoConfig()
    optim: OptimConfig = OptimConfig()
    precision: Precision = "auto"
    sdc: SdcConfig = SdcConfig()
    compile: bool = Field(True, description="torch.compile the blocks and fuse head + loss (seconds to compile, faster steps)")
    # evaluation, logging, checkpoints
    eval_every: int = Field(50, ge=0, description="steps between val bpb evaluations; 0 = only at the end")
    eval_tokens: int = Field(32768, ge=1)
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(100, ge=0, description="steps between checkpoints; 0 = only at the end")
    resume: bool = Field(False, description="continue from the newest intact checkpoint in out_dir")
    overwrite: bool = Field(False, description="replace an earlier run in out_dir (otherwise such a run is refused)")
    register_model: bool = Field(True, description="register the final model as a new version of seedflow-llm-<stage> "
                                                   "(it is logged to the run either way)")

    @model_validator(mode="after")
    def consistent(self) -> PretrainConfig:
        if self.n_kv_head and self.depth % self.n_kv_head:
            raise ValueError(f"n_kv_head={self.n_kv_head} must divide the number of heads ({self.depth})")
        inject, guard = self.sdc.inject, self.sdc.guard
        if inject.enabled and self.compile:
            raise ValueError("sdc.inject hooks a Linear of the eager model: set compile=false")
        if inject.enabled and inject.rank >= self.world_size:
            raise ValueError(f"sdc.inject.rank={inject.rank} is not one of the {self.world_size} worker(s)")
        if guard.enabled and guard.on_repeat == "rollback" and self.on_hub:
            raise ValueError("sdc.guard.on_repeat=rollback needs every worker to roll back together; "
                             "workers synchronised through the hub guard alone: use skip")
        names = [site.name for site in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names {names} are not unique")
        if self.sites and self.mode == "single":
            raise ValueError("sites need mode ddp or diloco")
        for site in self.sites:
            if site.leave_round and site.leave_round <= site.join_round:
                raise ValueError(f"site {site.name!r} leaves before round {site.leave_round} but joins at round "
                                 f"{site.join_round}, so it never trains; set leave_round > join_round (or 0: stays)")
        if self.mode == "ddp" and self.on_hub:
            if guard.enabled:
                raise ValueError("sdc.guard across sites needs mode diloco (DDP ranks guard together in one group)")
            if any(s.join_round or s.leave_round for s in self.sites):
                raise ValueError("join_round / leave_round need mode diloco: DDP sites share one optimizer state")
        if self.kill and not self.on_hub:
            raise ValueError("kill needs sites synchronised through the hub: mode diloco, or ddp across 2+ sites")
        for kill in self.kill:
            site = next((s for s in self.site_list() if s.name == kill.site), None)
            if site is None or kill.worker >= site.workers:
                raise ValueError(f"kill: no worker {kill.worker} at site {kill.site!r} (sites: "
                                 f"{[s.name for s in self.site_list()]})")
        return self

    def site_list(self) -> list[SiteConfig]:
        """The sites, explicit or implied: DiLoCo's `workers` are one site each, DDP's one site."""
        if self.sites:
            return list(self.sites)
        if self.mode == "single":
            return [SiteConfig(name="local")]
        if self.mode == "diloco":
            return [SiteConfig(name=f"w{i}") for i in range(self.workers)]
        return [SiteConfig(name="local", workers=self.workers)]

    @property
    def on_hub(self) -> bool:
        """Sites synchronise through the hub (tasks/llm/sites/hub.py): DiLoCo, or DDP across two or more sites."""
        return self.mode == "diloco" or (self.mode == "ddp" and len(self.site_list()) > 1)

    @property
    def world_size(self) -> int:
        return 1 if self.mode == "single" else sum(site.workers for site in self.site_list())


CHAT_TASK_OPTIONS = {"addition": {"size": 3000, "max_digits": 1}, "spelling": {"size": 3000}, "counting": {"size": 3000}}


class ChatStageConfig(PretrainConfig):
    """Midtraining / SFT: a training stage that starts from a checkpoint and reads a task mixture.

    Its defaults are those of a short fine-tuning stage (AdamW, DDP, few evaluations), not pretraining's."""

    init_from: str = Field("results/llm/pretrain", description="checkpoint or run folder of the previous stage")
    out_dir: str = "results/llm/midtrain"
    steps: int = Field(300, ge=0, description="optimizer steps; ignored when token_budget > 0")
    mode: Mode = "ddp"
    diloco: DilocoConfig = DilocoConfig(inner_steps=20)
    optim: OptimConfig = OptimConfig(kind="adamw", lr=0.003, warmdown_frac=0.3)
    compile: bool = Field(False, description="torch.compile the blocks and fuse head + loss")
    eval_every: int = Field(100, ge=0, description="steps between val bpb evaluations; 0 = only at the end")
    eval_tokens: int = Field(8192, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = only at the end")
    train_tasks: dict[str, float] = Field(default_factory=lambda: {"addition": 1.0, "spelling": 1.0, "counting": 1.0},
                                          description="task name -> weight (passes over the task)")
    val_tasks: dict[str, float] = Field(default_factory=lambda: {"addition": 0.1, "spelling": 0.1})
    task_options: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(CHAT_TASK_OPTIONS),
                                                    description="task name -> constructor options")
    use_mask: bool = Field(False, description="midtrain: train on assistant tokens only (SFT always masks)")
    pad_to_seq_len: bool = Field(False, description="sft: pad every batch to sequence_len")


class MidtrainConfig(ChatStageConfig):
    """Midtraining: packed chat rows of the task mixture, from the pretrained model."""

    train_tasks: dict[str, float] = Field(
        default_factory=lambda: {"addition": 1.0, "spelling": 1.0, "counting": 1.0, "gsm8k": 0.05},
        description="task name -> weight (passes over the task)")


class SftConfig(ChatStageConfig):
    """SFT: one conversation per row, loss on the assistant's tokens, from the midtrained model."""

    init_from: str = Field("results/llm/midtrain", description="checkpoint or run folder of the previous stage")
    out_dir: str = "results/llm/sft"


CHAT_STAGES: dict[str, type[ChatStageConfig]] = {"midtrain": MidtrainConfig, "sft": SftConfig}


class StudyConfig(StrictModel):
    """`llm_study`: the same pretrain -> midtrain -> sft -> eval chain per arm, arms differing in mode."""

    arms: list[list[Mode]] = Field(default_factory=lambda: [["ddp"] * 3, ["diloco"] * 3, ["diloco", "ddp", "ddp"]],
                                   description="modes of (pretrain, midtrain, sft) per arm")
    workers: int = Field(2, ge=2)
    seed: int = 0
    out_dir: str = "results/llm/study"
    experiment: str = "llm-study"
    overwrite: bool = Field(False, description="replace an earlier study in out_dir (otherwise it is refused)")
    pretrain: Overrides = Field(default_factory=dict, description="overrides of llm.pretrain for the study")
    midtrain: Overrides = Field(default_factory=dict, description="overrides of llm.midtrain")
    sft: Overrides = Field(default_factory=dict, description="overrides of llm.sft")
    eval: Overrides = Field(default_factory=dict, description="overrides of llm.eval")

    @model_validator(mode="after")
    def three_stages(self) -> StudyConfig:
        bad = [arm for arm in self.arms if len(arm) != 3 or "single" in arm]
        if bad or not self.arms:
            raise ValueError(f"every arm lists 3 distributed modes (pretrain, midtrain, sft), got {bad or 'none'}")
        return self


class EvalConfig(StrictModel):
    """`seedflow llm eval`: bits per byte on the val shards plus every task's score."""

    checkpoint: str = Field("results/llm/sft", description="checkpoint or run folder to evaluate")
    tokens_dir: str = Field("results/llm/tokens", description="token shards whose val split gives bits per byte")
    out_dir: str = "results/llm/eval"
    experiment: str = "llm-eval"
    tasks: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"addition": {"size": 100, "max_digits": 1}, "spelling": {"size": 100},
                                 "counting": {"size": 100}, "gsm8k": {}, "humaneval": {}},
        description="task name -> constructor options (tasks/llm/data/datasets build_task), e.g. mmlu: {path: ...}")
    split: str = Field("test", description="split of every task that has splits")
    max_examples: int = Field(50, ge=0, description="examples per task; 0 = all")
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    top_k: int = Field(0, ge=0, description="0 = no top-k filter")
    batch_size: int = Field(8, ge=1, description="prompts per forward for multiple choice and bpb")
    bpb_tokens: int = Field(16384, ge=0, description="val tokens for bits per byte; 0 = skip")
    humaneval_timeout_s: float = Field(5.0, gt=0)
    precision: Precision = "auto"
    seed: int = 0
