"""`seedflow llm`: a command per stage, each checking its inputs once, then running the stage's flow.

The check comes first, in the command, so bad input costs one line and no Prefect server or Ray
start; the flow then skips its own (flows/llm/checks.py). The data folder is resolved here, once.
"""

from __future__ import annotations

import json

import typer

from flows.llm.chat_stages import chat_config
from flows.llm.checks import resolve_data_dir, run_checked
from flows.llm.curtail import curtail_configs
from flows.llm.evaluation import eval_config
from flows.llm.pretrain import pretrain_config
from flows.llm.study import study_config
from flows.llm.tokenize import tokenizer_config
from flows.options import DATA_DIR_OPTION, OVERWRITE_OPTION, cli_overrides, comma_list, default, set_option
from tasks.common.errors import InputError

app = typer.Typer(help="LLM pipeline: tokenize -> pretrain -> midtrain -> sft -> eval (nanochat-style).",
                  no_args_is_help=True)
SET_OPTION = set_option("diloco.inner_steps=20")


def run_tokenize_flow(overrides: dict, data_dir: str | None) -> dict:
    from tasks.llm.preflight import check_tokenize

    data_dir = resolve_data_dir(data_dir)
    check_tokenize(tokenizer_config(overrides), data_dir)
    return run_checked("flows.llm.tokenize:llm_tokenize", overrides=overrides, data_dir=data_dir)


def run_study_flow(overrides: dict, data_dir: str | None) -> dict:
    from tasks.llm.preflight import check_study

    data_dir = resolve_data_dir(data_dir)
    check_study(study_config(overrides))
    return run_checked("flows.llm.study:llm_study", overrides=overrides, data_dir=data_dir)


@app.command()
def tokenize(
    vocab_size: int = typer.Option(None, help="Vocabulary size incl. 256 bytes and 9 special tokens."),
    corpus: str = typer.Option(None, help="Comma-separated files/folders (txt, jsonl, parquet); `generated` = built-in."),
    download_shards: int = typer.Option(None, help="FineWeb-Edu parquet shards to download first (needs internet)."),
    set_: list[str] = set_option("vocab_size=2048"),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Train the BPE tokenizer and encode the corpus into train/val token shards (Prefect flow `llm_tokenize`)."""
    overrides = cli_overrides(set_, vocab_size=vocab_size, corpus=comma_list(corpus), download_shards=download_shards)
    result = run_tokenize_flow(overrides, data_dir)
    typer.echo(json.dumps({k: result[k] for k in ("out_dir", "tokenizer", "metrics", "mlflow_run_id")}, indent=2))


@app.command()
def pretrain(
    mode: str = typer.Option(None, help="single | ddp | diloco (default: params.yaml llm.pretrain.mode)."),
    workers: int = typer.Option(None, help="Ray workers for ddp / diloco."),
    steps: int = typer.Option(None, help="Optimizer steps."),
    sites: str = typer.Option(None, help="Sites joined by emulated links: name[:workers][@mbit_per_s[/latency_ms]],... "
                                         "e.g. a@100/50,b@100/50 (more with --set sites=[...])."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from the newest intact checkpoint in out_dir."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = SET_OPTION,
) -> None:
    """Pretrain the GPT on the token shards (Prefect flow `llm_pretrain`, Ray workers, MLflow `llm-pretrain`)."""
    from tasks.llm.config import parse_sites
    from tasks.llm.preflight import check_pretrain

    site_list = parse_sites(sites) if sites is not None else None
    overrides = cli_overrides(set_, mode=mode, workers=workers, steps=steps, sites=site_list, resume=resume,
                              overwrite=overwrite)
    check_pretrain(pretrain_config(overrides), log=typer.echo)
    _print_stage(run_checked("flows.llm.pretrain:llm_pretrain", overrides=overrides))


def _run_chat_stage(stage: str, overrides: dict, data_dir: str | None) -> dict:
    from tasks.llm.preflight import check_chat_stage

    data_dir = resolve_data_dir(data_dir)
    check_chat_stage(stage, chat_config(stage, overrides), log=typer.echo)
    return run_checked(f"flows.llm.chat_stages:llm_{stage}", overrides=overrides, data_dir=data_dir)


def _print_stage(summary: dict) -> None:
    keys = ("stage", "mode", "steps", "final_train_loss", "val_bpb", "tokens_per_s", "mfu", "precision",
            "comm_bytes_per_worker", "sync_rounds", "wall_seconds", "model_dir", "mlflow_run_id")
    typer.echo(json.dumps({k: summary.get(k) for k in keys}, indent=2, default=str))


def chat_stage_command(stage: str, starts_from: str, doc: str) -> None:
    """`seedflow llm <stage>` for midtrain and SFT: the same options, their own section and default start."""

    def command(
        mode: str = typer.Option(None, help=f"single | ddp | diloco (default: params.yaml llm.{stage}.mode)."),
        steps: int = typer.Option(None, help="Optimizer steps."),
        init_from: str = typer.Option(None, help="Checkpoint, run folder or models:/NAME/VERSION "
                                                 f"(default: the {starts_from} run)."),
        overwrite: bool = OVERWRITE_OPTION,
        set_: list[str] = SET_OPTION,
        data_dir: str = DATA_DIR_OPTION,
    ) -> None:
        overrides = cli_overrides(set_, mode=mode, steps=steps, init_from=init_from, overwrite=overwrite)
        _print_stage(_run_chat_stage(stage, overrides, data_dir))

    command.__doc__ = doc
    app.command(stage)(command)


chat_stage_command("midtrain", "pretrain", "Midtrain on the chat-format task mixture (Prefect flow `llm_midtrain`, "
                                           "Ray workers).")
chat_stage_command("sft", "midtrain", "Supervised fine-tuning on padded conversation batches with the loss mask "
                                      "(Prefect flow `llm_sft`).")


@app.command("eval")
def eval_(
    checkpoint: str = typer.Option(None, help="Checkpoint, run folder or models:/NAME/VERSION (default: params.yaml)."),
    max_examples: int = typer.Option(None, help="Examples per task; 0 = all."),
    show: int = typer.Option(0, help="Print this many generations per generative task."),
    set_: list[str] = set_option("max_examples=20"),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Evaluate a checkpoint: val bits per byte, multiple choice by letter logits, generative tasks (Prefect flow `llm_eval`)."""
    from tasks.llm.preflight import check_eval

    overrides = cli_overrides(set_, checkpoint=checkpoint, max_examples=max_examples)
    data_dir = resolve_data_dir(data_dir)
    check_eval(eval_config(overrides))
    result = run_checked("flows.llm.evaluation:llm_eval", overrides=overrides, data_dir=data_dir, show=show)
    typer.echo(open(result["report"]).read())
    typer.echo(json.dumps({"bpb": result["bpb"], **{k: v["accuracy"] for k, v in result["tasks"].items()},
                           "mlflow_run_id": result["mlflow_run_id"]}))


@app.command()
def study(overwrite: bool = OVERWRITE_OPTION, set_: list[str] = set_option("pretrain.steps=100"),
          data_dir: str = DATA_DIR_OPTION) -> None:
    """DDP vs DiLoCo through pretrain -> midtrain -> sft, evaluated per stage (Prefect flow `llm_study`)."""
    result = run_study_flow(cli_overrides(set_, overwrite=overwrite), data_dir)
    typer.echo(open(result["report"]).read())
    typer.echo(json.dumps(result["numbers"]))


@app.command()
def curtail(
    policy: str = typer.Option(None, help="reactive | forecast (default: params.yaml llm.curtail.policy)."),
    threshold: float = typer.Option(None, help="MCI below which a site may train (llm.curtail.unit)."),
    target_site_steps: int = typer.Option(None, help="Optimizer steps summed over sites."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from the newest intact checkpoint."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = set_option("budget.carbon_kg=5"),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Curtailment-aware DiLoCo across sites that train only in clean-energy windows (Prefect flow `llm_curtail`)."""
    from tasks.llm.preflight import check_curtail

    overrides = cli_overrides(set_, policy=policy, threshold=threshold, target_site_steps=target_site_steps)
    for key, value in (("resume", resume), ("overwrite", overwrite)):
        if value is not None:
            overrides[f"pretrain.{key}"] = value
    data_dir = resolve_data_dir(data_dir)
    check_curtail(*curtail_configs(overrides), data_dir)
    summary = run_checked("flows.llm.curtail:llm_curtail", overrides=overrides, data_dir=data_dir)
    typer.echo(json.dumps({k: summary.get(k) for k in ("variant", "kg_co2", "energy_kwh", "idle_kwh", "share_in_windows",
                                                       "sim_hours", "val_bpb", "tokens", "budget_stop", "out_dir",
                                                       "mlflow_run_id")}, indent=2, default=str))


@app.command()
def chat(
    checkpoint: str = typer.Option("results/llm/sft", help="Checkpoint, run folder or models:/NAME/VERSION to talk to."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Ask one question, print the answer and exit."),
    temperature: float = typer.Option(0.6, help="0 = greedy."),
    top_k: int = typer.Option(50, help="Sample among the k most likely tokens; 0 = all."),
    max_tokens: int = typer.Option(256, help="Longest reply in tokens."),
) -> None:
    """Talk to a trained checkpoint in the terminal (calculator tool on; 'clear' resets, 'quit' or Ctrl-D ends)."""
    from tasks.llm.eval.chat_session import ChatSession
    from tasks.llm.preflight import check_checkpoint

    check_checkpoint(checkpoint, "--checkpoint")
    session = ChatSession.from_checkpoint(checkpoint, temperature=temperature, top_k=top_k or None,
                                          max_tokens=max_tokens)
    if prompt is not None:
        for piece in session.reply(prompt):
            typer.echo(piece, nl=False)
        typer.echo()
        return
    typer.echo(f"seedflow chat with {session.checkpoint} ('clear' resets, 'quit' or Ctrl-D ends)")
    while True:
        try:
            text = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if text in ("quit", "exit"):
            break
        if text == "clear":
            session.clear()
            continue
        if text:
            typer.echo("bot> ", nl=False)
            for piece in session.reply(text):
                typer.echo(piece, nl=False)
            typer.echo()


@app.command("tasks")
def show_tasks(
    name: str = typer.Argument(None, help="Task to show (default: list the tasks)."),
    n: int = typer.Option(3, help="Examples to show."),
    split: str = typer.Option("train", help="train | test (synthetic tasks also val)."),
    tokenizer: str = typer.Option(None, help="tokenizer.json used to render, relative to the project root (default: the "
                                             "one `seedflow llm tokenize` writes, params.yaml llm.tokenizer.out_dir)."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Show a task's conversations as the model sees them; [bracketed] tokens are not trained on."""
    from tasks.common.paths import project_root
    from tasks.llm.data.chat_format import render_conversation, visualize
    from tasks.llm.data.datasets import TASKS, build_task
    from tasks.llm.data.tokenizer import Tokenizer

    if name is None:
        typer.echo("\n".join(f"{key:10s} {cls.eval_type:12s} {(cls.__doc__ or '').strip().partition(chr(10))[0]}"
                             for key, cls in TASKS.items()))
        return
    path = project_root() / (tokenizer or f"{default('llm.tokenizer', 'out_dir')}/tokenizer.json")
    if not path.is_file():
        raise InputError(f"tokenizer {path} not found: run `seedflow llm tokenize` first, or pass --tokenizer "
                         "(e.g. --tokenizer results/demo/llm/tokens/tokenizer.json after `make demo`)")
    task_data = build_task(name, split, resolve_data_dir(data_dir))
    tok = Tokenizer.load(path)
    typer.echo(f"{name}: {len(task_data)} examples ({task_data.eval_type})")
    for i in range(min(n, len(task_data))):
        ids, mask = render_conversation(tok, task_data[i])
        typer.echo(f"\n--- example {i} ({len(ids)} tokens, {sum(mask)} trained)\n{visualize(tok, ids, mask)}")
