"""The `llm_midtrain` and `llm_sft` flows, made by one factory: they differ only in their params.yaml
section, their config model and their description, so each shows its own typed defaults on the run form."""

from __future__ import annotations

from typing import Any

from prefect import Flow, flow, get_run_logger

from flows.llm.checks import at_flow_start
from flows.llm.training import train
from flows.options import default, flow_overrides
from flows.runtime import task_runner
from tasks.common.config import load_config
from tasks.llm.config import CHAT_STAGES, ChatStageConfig, Mode

ARGS = """

    Args:
        mode: single, ddp or diloco.
        steps: optimizer steps.
        init_from: checkpoint, run folder or models:/NAME/VERSION to start from.
        sequence_len: tokens per row.
        resume: continue from the newest intact checkpoint in out_dir.
        overwrite: replace an earlier run in out_dir (without it, or resume, such a run is refused).
        overrides: any other key of params.yaml `llm.{stage}`, dotted; wins over the fields above.
        data_dir: public datasets folder (task files such as GSM8K).
    """


def chat_config(stage: str, overrides: dict[str, Any]) -> ChatStageConfig:
    return load_config(CHAT_STAGES[stage], f"llm.{stage}", overrides)


def with_checkpoint_depth(cfg: ChatStageConfig) -> ChatStageConfig:
    """The stage trains the model of its checkpoint: that depth is the one to log, not the section's."""
    from tasks.llm.train.checkpoint import read_meta
    from tasks.llm.train.stages import absolute

    return cfg.model_copy(update={"depth": read_meta(absolute(cfg.init_from))["model_config"]["n_layer"]})


def chat_stage_flow(stage: str, description: str) -> Flow:
    """The flow `llm_<stage>`, its parameters' defaults read from params.yaml `llm.<stage>`."""
    section, model = f"llm.{stage}", CHAT_STAGES[stage]

    def stage_flow(
        mode: Mode = default(section, "mode"),
        steps: int = default(section, "steps"),
        init_from: str = default(section, "init_from"),
        sequence_len: int = default(section, "sequence_len", model.model_fields["sequence_len"].default),
        resume: bool = default(section, "resume", model.model_fields["resume"].default),
        overwrite: bool = default(section, "overwrite", model.model_fields["overwrite"].default),
        overrides: dict[str, Any] | None = None,
        data_dir: str | None = None,
    ) -> dict[str, Any]:
        from tasks.llm.preflight import check_chat_stage

        cfg = chat_config(stage, flow_overrides(overrides, mode=mode, steps=steps, init_from=init_from,
                                                sequence_len=sequence_len, resume=resume, overwrite=overwrite))
        data_dir = at_flow_start(lambda _: check_chat_stage(stage, cfg, log=get_run_logger().info), data_dir)
        return train(stage, with_checkpoint_depth(cfg), data_dir)

    # the module path Prefect deployments and Ray workers load it by: flows.llm.chat_stages.llm_<stage>
    stage_flow.__name__ = stage_flow.__qualname__ = f"llm_{stage}"
    stage_flow.__doc__ = description + ARGS.format(stage=stage)
    return flow(name=f"llm_{stage}", task_runner=task_runner(), log_prints=True)(stage_flow)


llm_midtrain = chat_stage_flow("midtrain", "Midtrain on the chat-format task mixture, from the pretrained model.")
llm_sft = chat_stage_flow("sft", "Supervised fine-tuning on padded conversations with the loss on the assistant's tokens.")
