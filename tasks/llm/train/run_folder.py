"""A stage's run folder: what the run needs to know of it, what an earlier run left there, where to resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.llm.config import PretrainConfig
from tasks.llm.train.checkpoint import CheckpointError, read_meta, resume_point, step_folders


@dataclass
class RunContext:
    """What every rank needs besides the config and the data: all paths absolute."""

    out_dir: str
    stage: str = "pretrain"
    init_checkpoint: str | None = None
    resume_from: str | None = None
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None
    dist_url: str | None = None
    device: str = "cpu"
    tags: dict[str, str] = field(default_factory=dict)


def progress_log(out_dir: str | Path) -> Path:
    """Where rank 0 appends its progress lines (relayed into the Prefect flow run's log)."""
    return Path(out_dir) / "progress.log"


def previous_run(out: Path) -> str | None:
    """What an earlier run left in `out` (its final model or checkpoints), or None if nothing."""
    found = []
    if (out / "model" / "meta.json").is_file():
        found.append("model/")
    steps = step_folders(out / "checkpoints")
    if steps:
        found.append(f"checkpoints up to {steps[0].name}")
    return " and ".join(found) or None


class RunFolderTaken(CheckpointError):
    """An earlier run is in the out dir. The message names the command's flags; `in_flow_run()` names the
    parameters of the Prefect UI's run form instead, where no flags exist."""

    def __init__(self, out: Path, earlier: str, what: str = "run", resumable: bool = True):
        self.out, self.earlier, self.what, self.resumable = out, earlier, what, resumable
        super().__init__(self._message(("pass ", "--resume", "--overwrite", "--set out_dir=...")))

    def __reduce__(self):  # it crosses Ray and Prefect pickled: rebuilt from its fields, not its message
        return type(self), (self.out, self.earlier, self.what, self.resumable)

    def _message(self, words: tuple[str, str, str, str]) -> str:
        verb, resume, overwrite, out_dir = words
        ways = ([f"{resume} to continue it"] if self.resumable else []) + [f"{overwrite} to replace it"]
        return (f"{self.out} already holds a {self.what} ({self.earlier}); {verb}{', '.join(ways)}, or choose "
                f"another folder with {out_dir}")

    def in_flow_run(self) -> CheckpointError:
        flow_words = ("set the parameter ", "resume", "overwrite", 'overrides {"out_dir": ...}')
        return CheckpointError(self._message(flow_words))


def check_out_dir(cfg: PretrainConfig, out: Path) -> None:
    """Refuse to train over an earlier run unless the user said --resume or --overwrite."""
    earlier = previous_run(out)
    if earlier and not cfg.resume and not cfg.overwrite:
        raise RunFolderTaken(out, earlier)


def choose_resume(cfg: PretrainConfig, out: Path, steps: int, log=print) -> Path | None:
    """The checkpoint a --resume continues from: the newest intact one, damaged ones skipped and said.

    Checkpoints that exist but are all damaged are an error, never a silent restart from step 0."""
    root = out / "checkpoints"
    folder, notes = resume_point(root, None if cfg.on_hub else cfg.world_size)
    for note in notes:
        log(f"resume: {note}")
    if folder is None:
        if notes:
            raise CheckpointError(f"--resume: no intact checkpoint in {root}; pass --overwrite to start over")
        log(f"resume: no checkpoint in {root}, starting from step 0")
        return None
    meta = read_meta(folder)
    if meta["mode"] != cfg.mode or ("states" in meta) != cfg.on_hub or (
            not cfg.on_hub and meta["world_size"] != cfg.world_size):
        raise CheckpointError(f"{folder} was written by {meta['world_size']} worker(s) in mode {meta['mode']}; "
                              f"resume it with the same mode and workers (asked: {cfg.world_size}, {cfg.mode}; "
                              "runs across sites may resume with other sites)")
    if meta["step"] > steps:
        raise CheckpointError(f"{folder} is at step {meta['step']}, beyond this run's {steps} steps; "
                              "raise --steps or start a new run")
    log(f"resume: resuming from {folder} at step {meta['step']}")
    return folder
