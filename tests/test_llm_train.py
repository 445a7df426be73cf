"""The trainer: resume after a real kill, DiLoCo vs DDP on real Ray workers, data sources, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.common.config import ConfigError, load_config
from tasks.common.errors import InputError
from tasks.llm.train.checkpoint import CheckpointError, latest_checkpoint, load_model, read_meta
from tasks.llm.config import PretrainConfig
from tasks.llm.data.batches import TokenStreamSource
from tasks.llm.train.build import plan_steps
from tasks.llm.train.run import run_training

ROOT = Path(__file__).resolve().parents[1]


def byte_source(shared_data: Path, batch_size: int = 4, seq_len: int = 32) -> TokenStreamSource:
    """tinyshakespeare as byte tokens (vocab 256, one byte per token)."""
    text = (shared_data / "text" / "tinyshakespeare.txt").read_bytes()
    arr = np.frombuffer(text, dtype=np.uint8).astype(np.uint16)
    cut = int(len(arr) * 0.95)
    return TokenStreamSource(batch_size, seq_len, arrays={"train": arr[:cut], "val": arr[cut:]},
                             byte_lengths=np.ones(256, dtype=np.int64))


def tiny_cfg(**kw) -> PretrainConfig:
    base = dict(depth=1, sequence_len=32, device_batch_size=4, steps=20, eval_every=10, eval_tokens=512,
                log_every=5, checkpoint_every=5, threads_per_worker=1, precision="fp32", compile=False, experiment="llm-test")
    return PretrainConfig(**{**base, **kw})


def test_stage_config_overrides_and_errors():
    cfg = load_config(PretrainConfig, "llm.pretrain", {"depth": 6, "diloco.inner_steps": 10, "mode": "diloco"})
    assert (cfg.depth, cfg.diloco.inner_steps, cfg.world_size) == (6, 10, cfg.workers)
    with pytest.raises(ConfigError, match="llm.pretrain.dept"):
        load_config(PretrainConfig, "llm.pretrain", {"dept": 6})
    with pytest.raises(ConfigError, match="mode"):
        load_config(PretrainConfig, "llm.pretrain", {"mode": "fsdp"})


def test_plan_budget_and_bad_batch(shared_data):
    src = byte_source(shared_data)
    assert plan_steps(tiny_cfg(token_budget=1280, mode="ddp", workers=2), src) == (5, 1)
    assert plan_steps(tiny_cfg(total_batch_tokens=512), src) == (20, 4)
    with pytest.raises(ValueError, match="not a multiple"):
        plan_steps(tiny_cfg(total_batch_tokens=500), src)


def test_token_source_parts_are_disjoint_and_resume(shared_data):
    src = byte_source(shared_data)
    a = src.batches(0, 2, None)
    b = src.batches(1, 2, None)
    xa, _, _ = next(a)
    xb, _, _ = next(b)
    assert not torch.equal(xa, xb)
    _, _, pos = next(a)
    x3, y3, _ = next(a)
    x3r, y3r, _ = next(src.batches(0, 2, pos))
    assert torch.equal(x3, x3r) and torch.equal(y3, y3r)
    assert torch.equal(x3[:, 1:], y3[:, :-1])
    small = TokenStreamSource(4, 32, arrays={"train": np.arange(100), "val": np.arange(200)})
    with pytest.raises(ValueError, match="too few"):
        next(small.batches(0, 1, None))


def test_token_source_reads_real_shards(tmp_path):
    from tasks.llm.data.shards import write_shards
    from tasks.llm.data.tokenizer import Tokenizer

    docs = [f"document {i}: " + "the quick brown fox jumps over the lazy dog. " * 5 for i in range(200)]
    tok = Tokenizer.train(docs, vocab_size=300)
    write_shards(docs, tok, tmp_path / "tokens", val_fraction=0.2)
    src = TokenStreamSource(2, 16, tokens_dir=str(tmp_path / "tokens"))
    x, y, pos = next(src.batches(0, 1, None))
    assert x.shape == (2, 16) and int(x[0, 0]) == tok.bos_id and pos == {"offset": 32, "epoch": 0}
    assert src.vocab_size == tok.vocab_size and src.token_bytes()[tok.bos_id] == 0
    assert next(src.val_batches(64))[0].shape == (2, 16)


KILLED_RUN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.test_llm_train import byte_source, tiny_cfg
    from tasks.llm.train.run import run_training
    run_training(tiny_cfg(**json.loads(sys.argv[1])), byte_source(Path(sys.argv[2])), out_dir=sys.argv[3])
""")


def test_kill_and_resume_reproduces_the_loss_curve(shared_data, tmp_path, mlflow_store):
    kw = dict(steps=40, checkpoint_every=10, optim={"kind": "muon"})
    reference = run_training(tiny_cfg(**kw), byte_source(shared_data), out_dir=tmp_path / "ref")

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN.format(root=str(ROOT)), json.dumps({**kw, "steps": 40}),
                             str(shared_data), str(out)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        latest = latest_checkpoint(out / "checkpoints")
        if latest is not None and latest.name >= "step_000020":
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = int(latest_checkpoint(out / "checkpoints").name.split("_")[1])
    assert 20 <= killed_at < 40

    resumed = run_training(tiny_cfg(**kw, resume=True), byte_source(shared_data), out_dir=out)
    assert len(resumed["history"]) == 40
    np.testing.assert_allclose(resumed["history"], reference["history"], rtol=1e-3, atol=1e-4)
    assert resumed["val_bpb"] == pytest.approx(reference["val_bpb"], rel=1e-3)
    assert reference["history"][-1] < reference["history"][0] - 1.0


def test_compiled_training_follows_the_plain_run(shared_data, tmp_path, mlflow_store):
    kw = dict(steps=12, depth=2, precision="auto", eval_every=0, checkpoint_every=0)
    plain = run_training(tiny_cfg(**kw), byte_source(shared_data), out_dir=tmp_path / "plain")
    fast = run_training(tiny_cfg(compile=True, **kw), byte_source(shared_data), out_dir=tmp_path / "fast")
    np.testing.assert_allclose(fast["history"], plain["history"], rtol=2e-2)
    assert fast["history"][-1] < fast["history"][0] - 0.5
    load_model(fast["model_dir"])  # strict load: a compiled run's checkpoint keeps the plain module's names


def test_compile_without_a_cpp_compiler_is_a_clear_error(shared_data, tmp_path, mlflow_store, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ / clang++ on it
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(InputError, match="needs a C\\+\\+ compiler"):
        run_training(tiny_cfg(compile=True, steps=2), byte_source(shared_data), out_dir=tmp_path / "run")


def test_a_run_into_an_earlier_runs_folder_keeps_its_model(shared_data, tmp_path, mlflow_store):
    out = tmp_path / "run"
    run_training(tiny_cfg(steps=12, checkpoint_every=5), byte_source(shared_data), out_dir=out)
    with pytest.raises(CheckpointError, match="already holds a run .*--resume .*--overwrite"):
        run_training(tiny_cfg(steps=6, checkpoint_every=5), byte_source(shared_data), out_dir=out)
    assert read_meta(out / "model")["step"] == 12 and latest_checkpoint(out / "checkpoints").name == "step_000012"

    short = run_training(tiny_cfg(steps=6, checkpoint_every=5, overwrite=True), byte_source(shared_data), out_dir=out)
    assert read_meta(short["model_dir"])["step"] == 6
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_000005", "step_000006"]
    assert not list(out.glob(".model*"))  # the swap left no temporary folder behind


def test_resume_falls_back_past_a_damaged_checkpoint(shared_data, tmp_path, mlflow_store, capsys):
    out = tmp_path / "run"
    reference = run_training(tiny_cfg(steps=15, checkpoint_every=5), byte_source(shared_data), out_dir=tmp_path / "ref")
    run_training(tiny_cfg(steps=10, checkpoint_every=5), byte_source(shared_data), out_dir=out)
    (out / "checkpoints" / "step_000010" / "model.safetensors").write_bytes(b"not a safetensors file")
    resumed = run_training(tiny_cfg(steps=15, checkpoint_every=5, resume=True), byte_source(shared_data), out_dir=out)
    said = "".join(capsys.readouterr())
    assert "step_000010 is unusable" in said and "resuming from" in said and "at step 5" in said
    assert "resuming from" in (out / "progress.log").read_text()  # relayed into the Prefect run log
    np.testing.assert_allclose(resumed["history"], reference["history"], rtol=1e-3, atol=1e-4)

    for folder in (out / "checkpoints").glob("step_*"):
        (folder / "rank0.pt").write_text("garbage")
    with pytest.raises(CheckpointError, match="no intact checkpoint .*--overwrite"):
        run_training(tiny_cfg(steps=20, resume=True), byte_source(shared_data), out_dir=out)


def test_damaged_checkpoint_files_are_named(tmp_path):
    from tasks.llm.train.checkpoint import load_state, save_checkpoint
    from tasks.llm.model.gpt import GPT, GPTConfig

    folder = save_checkpoint(tmp_path / "ck", GPT(GPTConfig.from_depth(1, 64, 16)), {}, {"step": 1})
    (folder / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match=r"model.safetensors is damaged"):
        load_model(folder)
    (folder / "rank0.pt").write_text("12x")
    with pytest.raises(CheckpointError, match=r"rank0.pt is damaged"):
        load_state(folder / "rank0.pt")
    (folder / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_meta(folder)


def test_precision_follows_the_hardware(shared_data, tmp_path, mlflow_store, monkeypatch):
    """With no fast bf16 (forced), `auto` trains in fp32, Muon included, and the run records it."""
    import mlflow

    from tasks.common import precision

    monkeypatch.setenv("SEEDFLOW_FAST_BF16", "0")
    precision.fast_bf16.cache_clear()
    try:
        s = run_training(tiny_cfg(steps=2, precision="auto", optim={"kind": "muon"}), byte_source(shared_data),
                         out_dir=tmp_path / "run")
        achieved = s["flops_per_token"] * s["tokens_per_s"] / s["workers"]
        assert s["precision"] == "fp32" and s["matmul_peak_flops"] > 0
        assert s["mfu"] == pytest.approx(min(1.0, achieved / s["matmul_peak_flops"]))  # rate x FLOPs vs the fp32 peak
        run = mlflow.get_run(s["mlflow_run_id"])
        assert run.data.tags["precision"] == "fp32" and run.data.tags["cpu"] == precision.cpu_model()
        monkeypatch.setenv("SEEDFLOW_FAST_BF16", "1")
        precision.fast_bf16.cache_clear()
        assert precision.resolve_precision("auto") == "bf16" and precision.resolve_precision("fp32") == "fp32"
    finally:
        precision.fast_bf16.cache_clear()


CPUINFO = {  # the flags lines of /proc/cpuinfo on the processors this project's machines have been seen with
    "intel_amx": "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: fpu sse2 avx2 avx512f "
                 "avx512_bf16 amx_bf16 amx_tile amx_int8\n",
    "amd_zen4": "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n",
    "amd_avx2": "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 fma avx avx2 f16c\n",
    "aarch64": "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16\n",
}


@pytest.mark.parametrize("cpu, machine, verdict", [
    ("intel_amx", "x86_64", True), ("amd_zen4", "x86_64", True), ("amd_avx2", "x86_64", False),
    ("aarch64", "aarch64", None),  # Arm's flags do not say how fast bf16 is: timed instead
])
def test_precision_follows_the_cpu_flags(cpu, machine, verdict):
    from tasks.common.precision import bf16_by_flags, flags_in

    flags = flags_in(CPUINFO[cpu])
    assert flags is not None and "avx2" in flags if machine == "x86_64" else "asimd" in flags
    assert bf16_by_flags(flags, machine) is verdict
    assert bf16_by_flags(None, "x86_64") is None  # no /proc/cpuinfo: timed


def test_checkpoint_and_init_from_it(shared_data, tmp_path, mlflow_store):
    first = run_training(tiny_cfg(steps=5), byte_source(shared_data), out_dir=tmp_path / "a", stage="pretrain")
    model, meta = load_model(first["model_dir"])
    assert meta["step"] == 5 and meta["stage"] == "pretrain"
    second = run_training(tiny_cfg(steps=3, depth=3), byte_source(shared_data), init_checkpoint=str(tmp_path / "a"),
                          out_dir=tmp_path / "b", stage="midtrain")
    again, _ = load_model(second["model_dir"])
    assert again.config == model.config  # the architecture comes from the checkpoint, not the config
    assert second["history"][0] < first["history"][0]  # started from trained weights
    import mlflow

    runs = mlflow.search_runs(experiment_names=["llm-test"])
    assert set(runs["tags.stage"]) == {"pretrain", "midtrain"}
    assert (runs["status"] == "FINISHED").all() and runs["metrics.val_bpb"].notna().all()


def test_diloco_h1_equals_ddp_on_two_ray_workers(shared_data, tmp_path, mlflow_store, ray_local):
    """With plain SGD inside, H=1, outer lr 1 and no momentum, DiLoCo's averaged pseudo-gradient is
    lr x the averaged gradient: the same update as DDP. (Adam or Muon inside would normalise each
    worker's gradient before averaging, so they would differ.) DDP runs in one gloo group, DiLoCo
    through the hub: two mechanisms, one result."""
    common = dict(steps=6, eval_every=0, checkpoint_every=0, workers=2,
                  optim={"kind": "sgd", "lr": 0.5, "grad_clip": 0.0, "warmdown_frac": 0.0})
    ddp = run_training(tiny_cfg(mode="ddp", **common), byte_source(shared_data), out_dir=tmp_path / "ddp")
    dil = run_training(tiny_cfg(mode="diloco", diloco={"inner_steps": 1, "outer_lr": 1.0, "outer_momentum": 0.0},
                                **common), byte_source(shared_data), out_dir=tmp_path / "diloco")
    a, _ = load_model(ddp["model_dir"])
    b, _ = load_model(dil["model_dir"])
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)
    n_params = ddp["n_params"]
    assert ddp["comm_bytes_per_worker"] == 6 * 2 * 4 * n_params  # a 2-worker ring: sends B, receives B per step
    assert dil["comm_bytes_per_worker"] == (6 + 5) * 4 * n_params  # 6 pseudo-gradients up, 5 updates down
    assert ddp["sync_rounds"] == dil["sync_rounds"] == 6
    assert set(dil["sites"]) == {"w0", "w1"} and dil["tokens"] == ddp["tokens"]


def test_default_run_names_tell_alike_runs_apart():
    from tasks.llm.train.run import default_run_name

    ddp = PretrainConfig(mode="ddp", workers=2, depth=2)
    sites = PretrainConfig.model_validate({"mode": "diloco", "sites": [{"name": "a"}, {"name": "b"}]})
    first, second = default_run_name(ddp, "pretrain"), default_run_name(ddp, "pretrain")
    assert first != second and first.startswith("pretrain-ddp-d2-2w-")
    assert default_run_name(sites, "pretrain").startswith("pretrain-diloco-d4-a+b-")
