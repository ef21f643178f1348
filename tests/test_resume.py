"""Crash-safe checkpoints and bit-exact resume.

The central test runs a real `polyformer pretrain` command and SIGKILLs it twice — once mid-run,
once in the middle of writing a checkpoint — resumes it each time, and requires its metrics.csv
to equal, value for value, that of a separate, uninterrupted run of the same command (CPU, fp32,
the same --seed; a fresh process each time, so the seed alone must fix the initial weights).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import polyformer as pf
from polyformer.errors import ConfigError
from polyformer.training import checkpoint as ckpt
from polyformer.training.objectives import CausalLM, Seq2SeqLM
from polyformer.training.trainer import Trainer
from train_tiny import TINY_MODEL, RandomSource, build_model, one_thread, quiet_config, write_corpus

SCRIPT = Path(__file__).with_name("hooked_cli.py")
COMPARED = ("step", "loss", "lr", "grad_norm", "eval_loss", "eval_lm_accuracy")  # all but timing

pytestmark = pytest.mark.usefixtures("one_thread")


def _pretrain_command(tmp_path: Path) -> list[str]:
    """A 12-step decoder pretraining (2 micro-batches a step, checkpoints every 3, evaluation every 4)."""
    config = tmp_path / "quiet.yaml"
    config.write_text("train:\n  tensorboard: false\n  plot: false\n")
    return ["pretrain", "--arch", "decoder", "--tokenizer", "char", "--data", str(write_corpus(tmp_path / "corpus.txt")),
            "--block-size", "16", "--batch-size", "4", "--micro-batches", "2", "--max-steps", "12", "--save-every", "3",
            "--eval-every", "4", "--eval-batches", "2", "--lr", "3e-3", "--warmup-steps", "2", "--seed", "5",
            "--no-progress", "--config", str(config), *TINY_MODEL]


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {what}: {proc.communicate()[0]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _logged_steps(run: Path) -> int:
    try:
        lines = (run / "metrics.csv").read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0
    return int(lines[-1].split(",")[0]) if lines else 0


def _compared_rows(run: Path) -> list[tuple[str, ...]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return [tuple(row.get(key, "") for key in COMPARED) for row in csv.DictReader(handle)]


def _leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("."))


def test_sigkill_mid_run_and_during_checkpoint_write_resumes_bit_exactly(tmp_path):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    command = _pretrain_command(tmp_path)
    uninterrupted = _start("--", *command, "--out", reference)

    # 1. the same command, killed mid-run: after step 7 is logged (checkpoints at 3 and 6 exist)
    run = _start("--delay", "0.05", "--", *command, "--out", crashed)
    _wait_for(lambda: _logged_steps(crashed) >= 7, run, "step 7")
    _kill(run)
    assert ckpt.latest_checkpoint(crashed).name == "step-000006"

    # 2. resumed, then killed while the step-9 checkpoint is half written
    run = _start("--stall-save-at", "9", "--flag", crashed / "STALLED", "--", "pretrain", "--resume", crashed)
    _wait_for(lambda: (crashed / "STALLED").exists(), run, "the step-9 checkpoint write")
    _kill(run)
    assert any(name.startswith(".tmp-step-000009") for name in _leftovers(crashed))
    assert ckpt.latest_checkpoint(crashed).name == "step-000006", "a half-written checkpoint was exposed"

    # 3. resumed to the end
    _finish(_start("--", "pretrain", "--resume", crashed))
    _finish(uninterrupted)

    expected = _compared_rows(reference)
    assert len(expected) == 12 and expected[3][4] != ""  # evaluated at step 4
    assert _compared_rows(crashed) == expected
    assert _leftovers(crashed) == []
    assert [p.name for _, p in ckpt.list_checkpoints(crashed)] == ["step-000009", "step-000012"]
    assert (crashed / "checkpoints" / "best" / "metrics.json").is_file()
    final = [pf.load(run_dir / "model").state_dict() for run_dir in (reference, crashed)]
    assert all(torch.equal(final[0][name], final[1][name]) for name in final[0])


def test_resume_with_a_different_config_names_the_field(tmp_path):
    source = RandomSource("seq2seq")

    def config(**changes):
        return quiet_config(**{"max_steps": 2, "schedule": "constant", "out_dir": str(tmp_path), **changes})

    Trainer(build_model("seq2seq"), Seq2SeqLM(0.1), source, config()).train()
    mismatches = [
        (build_model("seq2seq"), Seq2SeqLM(0.2), source, config(), "objective.label_smoothing"),
        (build_model("seq2seq"), Seq2SeqLM(0.1), RandomSource("seq2seq", rows=8), config(), "batch.input_ids"),
        (build_model("seq2seq"), Seq2SeqLM(0.1), source, config(lr=0.5), "train.lr"),
        (build_model("seq2seq"), Seq2SeqLM(0.1), source, config(schedule="cosine"), "train.schedule"),
    ]
    wider = build_model("seq2seq")
    mismatches.append((type(wider)(wider.config.replace(intermediate_size=128)), Seq2SeqLM(0.1), source, config(), "model.intermediate_size"))
    for model, objective, batches, train_config, field in mismatches:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            Trainer(model, objective, batches, train_config).train(resume=True)
    with pytest.raises(ConfigError, match="already holds a training run"):
        Trainer(build_model("seq2seq"), Seq2SeqLM(0.1), source, config()).train()

    # max_steps may grow when the schedule does not depend on it: the run continues where it stopped
    history = Trainer(build_model("seq2seq"), Seq2SeqLM(0.1), source, config(max_steps=4)).train(resume=True)
    assert [row["step"] for row in history] == [1, 2, 3, 4]


def test_checkpoint_folder_loads_as_a_model_and_corrupt_latest_falls_back(tmp_path):
    source = RandomSource("causal")
    config = quiet_config(max_steps=4, save_every=2, keep_last=3, schedule="constant", out_dir=str(tmp_path))
    trainer = Trainer(build_model("causal"), CausalLM(), source, config)
    trainer.train()
    step4 = tmp_path / "checkpoints" / "step-000004"
    loaded = pf.load(step4)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.vocab_projection().weight is loaded.embeddings.tokens.weight  # tied weights re-tied

    (step4 / "optimizer.safetensors").write_bytes(b"\x00\x01")  # truncated file
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        checkpoint = ckpt.resume(tmp_path)
    assert checkpoint.state.step == 2
    assert not step4.exists()  # discarded so step 4 can be written again
    history = Trainer(build_model("causal"), CausalLM(), source, config).train(resume=True)
    assert [row["step"] for row in history] == [1, 2, 3, 4]
