"""`seedflow llm ...` (tokenize, pretrain, and later stages), `seedflow bench pretrain`, the LLM demo.

Each stage is a command of the `llm` sub-app; engineers add theirs here. Heavy imports stay
inside the functions so `seedflow --help` is instant.
"""

from __future__ import annotations

import json

import typer

from flows.runner import run_flow
from tasks.common.cli_options import DATA_DIR_OPTION, SET_OPTION, cli_overrides, comma_list

OVERWRITE_OPTION = typer.Option(None, "--overwrite/--no-overwrite",
                                help="Replace an earlier run in out_dir (without it such a run is refused).")

app = typer.Typer(help="LLM pipeline: tokenize -> pretrain -> midtrain -> sft -> eval (nanochat-style).",
                  no_args_is_help=True)


@app.command()
def pretrain(
    mode: str = typer.Option(None, help="single | ddp | diloco (default: params.yaml llm.pretrain.mode)."),
    workers: int = typer.Option(None, help="Ray workers for ddp / diloco."),
    steps: int = typer.Option(None, help="Optimizer steps."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from the newest intact checkpoint in out_dir."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = SET_OPTION,
) -> None:
    """Pretrain the GPT on the token shards (Prefect flow `llm_pretrain`, Ray workers, MLflow `llm-pretrain`)."""
    from tasks.common.config import load_config
    from tasks.llm.config import PretrainConfig
    from tasks.llm.preflight import check_pretrain

    overrides = cli_overrides(set_, mode=mode, workers=workers, steps=steps, resume=resume, overwrite=overwrite)
    check_pretrain(load_config(PretrainConfig, "llm.pretrain", overrides), log=typer.echo)
    summary = run_flow("flows.llm:llm_pretrain", overrides=overrides)
    typer.echo(json.dumps(summary, indent=2, default=str))


def run_tokenize_flow(overrides: dict, data_dir: str | None) -> dict:
    from tasks.common.config import load_config
    from tasks.llm.config import TokenizerConfig
    from tasks.llm.preflight import check_tokenize

    check_tokenize(load_config(TokenizerConfig, "llm.tokenizer", overrides), data_dir)
    return run_flow("flows.llm:llm_tokenize", overrides=overrides, data_dir=data_dir)


@app.command()
def tokenize(
    vocab_size: int = typer.Option(None, help="Vocabulary size incl. 256 bytes and 9 special tokens."),
    corpus: str = typer.Option(None, help="Comma-separated files/folders (txt, jsonl, parquet); `generated` = built-in."),
    download_shards: int = typer.Option(None, help="FineWeb-Edu parquet shards to download first (needs internet)."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Train the BPE tokenizer and encode the corpus into train/val token shards (Prefect flow `llm_tokenize`)."""
    overrides = cli_overrides(set_, vocab_size=vocab_size, corpus=comma_list(corpus), download_shards=download_shards)
    result = run_tokenize_flow(overrides, data_dir)
    typer.echo(json.dumps({k: result[k] for k in ("out_dir", "tokenizer", "metrics", "mlflow_run_id")}, indent=2))


@app.command("tasks")
def show_tasks(
    name: str = typer.Argument(None, help="Task to show (default: list the tasks)."),
    n: int = typer.Option(3, help="Examples to show."),
    split: str = typer.Option("train", help="train | test (synthetic tasks also val)."),
    tokenizer: str = typer.Option("results/llm/tokens/tokenizer.json", help="Tokenizer used to render (relative: to the project root)."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Show a task's conversations as the model sees them; [bracketed] tokens are not trained on."""
    from tasks.common.paths import project_root
    from tasks.llm.chat import render_conversation, visualize
    from tasks.llm.datasets import TASKS, build_task
    from tasks.llm.tokenizer import Tokenizer

    if name is None:
        typer.echo("\n".join(f"{key:10s} {cls.eval_type:12s} {(cls.__doc__ or '').strip().partition(chr(10))[0]}"
                             for key, cls in TASKS.items()))
        return
    task = build_task(name, split, data_dir)
    tok = Tokenizer.load(project_root() / tokenizer)
    typer.echo(f"{name}: {len(task)} examples ({task.eval_type})")
    for i in range(min(n, len(task))):
        ids, mask = render_conversation(tok, task[i])
        typer.echo(f"\n--- example {i} ({len(ids)} tokens, {sum(mask)} trained)\n{visualize(tok, ids, mask)}")


@app.command("eval")
def eval_(
    checkpoint: str = typer.Option(None, help="Checkpoint or run folder (default: params.yaml llm.eval.checkpoint)."),
    max_examples: int = typer.Option(None, help="Examples per task; 0 = all."),
    show: int = typer.Option(0, help="Print this many generations per generative task."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Evaluate a checkpoint: val bits per byte, multiple choice by letter logits, generative tasks (MLflow `llm-eval`)."""
    from tasks.common.config import load_config
    from tasks.llm.config import EvalConfig
    from tasks.llm.preflight import check_eval

    overrides = cli_overrides(set_, checkpoint=checkpoint, max_examples=max_examples)
    check_eval(load_config(EvalConfig, "llm.eval", overrides))
    result = run_flow("flows.llm_stages:llm_eval", overrides=overrides, data_dir=data_dir, show=show)
    typer.echo(open(result["report"]).read())
    typer.echo(json.dumps({"bpb": result["bpb"], **{k: v["accuracy"] for k, v in result["tasks"].items()},
                           "mlflow_run_id": result["mlflow_run_id"]}))


@app.command()
def chat(
    checkpoint: str = typer.Option("results/llm/sft", help="Checkpoint or run folder to talk to."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Ask one question, print the answer and exit."),
    temperature: float = typer.Option(0.6, help="0 = greedy."),
    top_k: int = typer.Option(50, help="Sample among the k most likely tokens; 0 = all."),
    max_tokens: int = typer.Option(256, help="Longest reply in tokens."),
) -> None:
    """Talk to a trained checkpoint in the terminal (calculator tool on; 'clear' resets, 'quit' or Ctrl-D ends)."""
    from tasks.llm.chat_session import ChatSession
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


def bench_pretrain(
    depths: str = typer.Option("4,8,12", help="Depths of the single-process throughput models (comma-separated)."),
    seq_len: int = typer.Option(512, help="Sequence length of the throughput models."),
    vocab: int = typer.Option(8192, help="Vocabulary of the throughput models (random tokens)."),
    accum: int = typer.Option(8, help="Micro-batches of 8 sequences per optimizer step in the throughput runs."),
    compare_steps: int = typer.Option(200, help="Optimizer steps of each DDP / DiLoCo run (same tokens, same seed); 0 skips it."),
    inner_steps: int = typer.Option(50, help="DiLoCo H."),
    seeds: str = typer.Option("0,1,2", help="Seeds of the DDP / DiLoCo comparison (bpb figures are their mean)."),
    precision: str = typer.Option("auto", help="auto | bf16 | fp32 for the throughput runs (auto: bf16 only where fast)."),
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Tokens/s and MFU (vs the matmul peak of the dtype in use, measured here) of compiled single-process
    training per depth, the eager trainer at the first depth as baseline, then DDP vs DiLoCo on 2 Ray
    workers: final val bpb, bytes per worker and their ratio, wall seconds. Names the CPU and precision."""
    from tasks.common.precision import hardware_tags
    from tasks.llm.bench import compare_ddp_diloco, single_throughput

    depth_list, seed_list = _int_list(depths, "--depths"), _int_list(seeds, "--seeds")
    compiled = [single_throughput(d, seq_len, vocab, accum=accum, compile=True, precision=precision) for d in depth_list]
    eager = single_throughput(compiled[0]["depth"], seq_len, vocab, accum=accum, compile=False, precision=precision)
    out = {"hardware": hardware_tags(), "precision": compiled[0]["precision"], "single": compiled, "single_eager": eager,
           "compile_speedup": round(compiled[0]["tokens_per_s"] / eager["tokens_per_s"], 2)}
    if compare_steps:
        out.update(compare_ddp_diloco(data_dir, compare_steps, inner_steps, seeds=tuple(seed_list)))
    print(json.dumps(out))


def _int_list(value: str, option: str) -> list[int]:
    try:
        numbers = [int(item) for item in comma_list(value)]
    except ValueError:
        numbers = []
    if not numbers:
        raise typer.BadParameter(f"{option} takes comma-separated integers, got {value!r}")
    return numbers


def demo(data_dir: str | None) -> str:
    """Tokenize tinyshakespeare, then a tiny pretrain in DDP and in DiLoCo: two runs side by side in MLflow."""
    from tasks.common.config import read_params

    settings = read_params().get("demo", {}).get("llm", {})
    run_tokenize_flow(settings.get("tokenizer", {}), data_dir)
    lines = []
    for mode in ("ddp", "diloco"):  # the demo replaces its own earlier results
        overrides = {**settings.get("pretrain", {}), "mode": mode, "out_dir": f"results/demo/llm/pretrain_{mode}",
                     "run_name": f"demo-{mode}", "overwrite": True}
        s = run_flow("flows.llm:llm_pretrain", overrides=overrides)
        lines.append(f"{mode}: val bpb {s['val_bpb']:.3f}, {s['comm_bytes_per_worker'] / 1e6:.1f} MB/worker, "
                     f"{s['wall_seconds']:.0f}s")
    return f"llm pretrain ({'; '.join(lines)}) in MLflow experiment 'llm-pretrain', results/demo/llm/"


def _run_chat_stage(stage: str, overrides: dict, data_dir: str | None) -> dict:
    from tasks.common.config import load_config
    from tasks.llm.config import CHAT_STAGES
    from tasks.llm.preflight import check_chat_stage

    check_chat_stage(stage, load_config(CHAT_STAGES[stage], f"llm.{stage}", overrides), log=typer.echo)
    return run_flow(f"flows.llm_stages:llm_{stage}", overrides=overrides, data_dir=data_dir)


def _stage_summary(summary: dict) -> str:
    keys = ("stage", "mode", "steps", "final_train_loss", "val_bpb", "comm_bytes_per_worker", "sync_rounds",
            "wall_seconds", "model_dir", "mlflow_run_id")
    return json.dumps({k: summary.get(k) for k in keys}, indent=2, default=str)


@app.command()
def midtrain(
    mode: str = typer.Option(None, help="single | ddp | diloco (default: params.yaml llm.midtrain.mode)."),
    steps: int = typer.Option(None, help="Optimizer steps."),
    init_from: str = typer.Option(None, help="Checkpoint or run folder to start from (default: the pretrain run)."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Midtrain on the chat-format task mixture (Prefect flow `llm_midtrain`, Ray workers)."""
    overrides = cli_overrides(set_, mode=mode, steps=steps, init_from=init_from, overwrite=overwrite)
    summary = _run_chat_stage("midtrain", overrides, data_dir)
    typer.echo(_stage_summary(summary))


@app.command()
def sft(
    mode: str = typer.Option(None, help="single | ddp | diloco (default: params.yaml llm.sft.mode)."),
    steps: int = typer.Option(None, help="Optimizer steps."),
    init_from: str = typer.Option(None, help="Checkpoint or run folder to start from (default: the midtrain run)."),
    overwrite: bool = OVERWRITE_OPTION,
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Supervised fine-tuning on padded conversation batches with the loss mask (Prefect flow `llm_sft`)."""
    overrides = cli_overrides(set_, mode=mode, steps=steps, init_from=init_from, overwrite=overwrite)
    summary = _run_chat_stage("sft", overrides, data_dir)
    typer.echo(_stage_summary(summary))


def run_study_flow(overrides: dict, data_dir: str | None) -> dict:
    from tasks.common.config import load_config
    from tasks.llm.config import StudyConfig
    from tasks.llm.preflight import check_study

    check_study(load_config(StudyConfig, "llm.study", overrides))
    return run_flow("flows.llm_stages:llm_study", overrides=overrides, data_dir=data_dir)


@app.command()
def study(overwrite: bool = OVERWRITE_OPTION, set_: list[str] = SET_OPTION, data_dir: str = DATA_DIR_OPTION) -> None:
    """DDP vs DiLoCo through pretrain -> midtrain -> sft, evaluated per stage (Prefect flow `llm_study`)."""
    result = run_study_flow(cli_overrides(set_, overwrite=overwrite), data_dir)
    typer.echo(open(result["report"]).read())
    typer.echo(json.dumps(result["numbers"]))


def bench_study(data_dir: str = DATA_DIR_OPTION) -> None:
    """The study at a small fixed size (`llm.bench_study` overrides); last line: the report card's numbers."""
    import time

    from tasks.common.config import read_params
    from tasks.common.prefect_api import prefect_api

    llm = read_params().get("llm", {})
    settings = llm.get("bench_study", {})
    tokens_dir = settings.get("tokenizer", {}).get("out_dir", "results/bench/llm_study/tokens")
    study_overrides = {**settings.get("study", {}), "pretrain.tokens_dir": tokens_dir, "eval.tokens_dir": tokens_dir}
    start = time.perf_counter()
    with prefect_api():  # one server for both flows: Prefect's client keeps the first URL it saw
        run_tokenize_flow(settings.get("tokenizer", {}), data_dir)
        result = run_study_flow(study_overrides, data_dir)
    print(json.dumps({"report_card": result["numbers"], "chance": result["chance"], "report": result["report"],
                      "wall_s": round(time.perf_counter() - start, 1)}))
