"""`seedflow llm ...` (tokenize, pretrain, and later stages), `seedflow bench pretrain`, the LLM demo.

Each stage is a command of the `llm` sub-app; engineers add theirs here. Heavy imports stay
inside the functions so `seedflow --help` is instant.
"""

from __future__ import annotations

import json

import typer

from tasks.common.cli_options import DATA_DIR_OPTION, SET_OPTION

app = typer.Typer(help="LLM pipeline: tokenize -> pretrain -> midtrain -> sft -> eval (nanochat-style).",
                  no_args_is_help=True)


def _overrides(assignments: list[str] | None, **flags) -> dict:
    """`--set k=v` assignments plus explicit flags that were given (None = not given)."""
    from tasks.common.config import parse_assignments

    overrides = parse_assignments(assignments or [])
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides


@app.command()
def pretrain(
    mode: str = typer.Option(None, help="single | ddp | diloco (default: params.yaml llm.pretrain.mode)."),
    workers: int = typer.Option(None, help="Ray workers for ddp / diloco."),
    steps: int = typer.Option(None, help="Optimizer steps."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from the last checkpoint in out_dir."),
    set_: list[str] = SET_OPTION,
) -> None:
    """Pretrain the GPT on the token shards (Prefect flow `llm_pretrain`, Ray workers, MLflow `llm-pretrain`)."""
    from tasks.common.prefect_api import prefect_api

    overrides = _overrides(set_, mode=mode, workers=workers, steps=steps, resume=resume)
    with prefect_api():
        from flows.llm import llm_pretrain

        summary = llm_pretrain(overrides=overrides)
    typer.echo(json.dumps(summary, indent=2, default=str))


def run_tokenize_flow(overrides: dict, data_dir: str | None) -> dict:
    from tasks.common.prefect_api import prefect_api

    with prefect_api():
        from flows.llm import llm_tokenize

        return llm_tokenize(overrides=overrides, data_dir=data_dir)


@app.command()
def tokenize(
    vocab_size: int = typer.Option(None, help="Vocabulary size incl. 256 bytes and 9 special tokens."),
    corpus: str = typer.Option(None, help="Comma-separated files/folders (txt, jsonl, parquet); `generated` = built-in."),
    download_shards: int = typer.Option(None, help="FineWeb-Edu parquet shards to download first (needs internet)."),
    set_: list[str] = SET_OPTION,
    data_dir: str = DATA_DIR_OPTION,
) -> None:
    """Train the BPE tokenizer and encode the corpus into train/val token shards (Prefect flow `llm_tokenize`)."""
    corpus_list = [c.strip() for c in corpus.split(",") if c.strip()] if corpus else None
    overrides = _overrides(set_, vocab_size=vocab_size, corpus=corpus_list, download_shards=download_shards)
    result = run_tokenize_flow(overrides, data_dir)
    typer.echo(json.dumps({k: result[k] for k in ("out_dir", "tokenizer", "metrics", "mlflow_run_id")}, indent=2))
