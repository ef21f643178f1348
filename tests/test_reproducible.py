"""The same command with the same --seed gives the same run in a new process; another seed, another run.

Two fresh processes run the same four commands (pretrain a decoder, pretrain an encoder with NSP,
fine-tune a classifier with a fresh head, embed-train), one in order and one in reverse, so each
command follows other work in one process and starts it in the other: torch starts every process
from a random seed, and only each command's own seeding can make the two metrics.csv files agree
bit for bit (every column but the timing). The same commands with another --seed, run in this
process, must log other losses.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cli_runner import run_cli
from polyformer.training.trainer import use_deterministic_kernels
from task_tiny import FAST, SENTIMENT, encoder_dir, sentiment_rows, wordpiece_tokenizer, write_csv
from train_tiny import TINY_MODEL, one_thread, write_corpus  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
TIMING = ("tokens_per_s",)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_sentence_encoder_dir) -> dict[str, Path]:
    """Tiny inputs of every verb: a corpus, a quiet run config, a classifier body and its data, text pairs."""
    root = tmp_path_factory.mktemp("inputs")
    quiet = root / "quiet.yaml"
    quiet.write_text("train:\n  tensorboard: false\n  plot: false\n")
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": f"the {w}", "positive": f"a {w}"}) + "\n" for w in "cat dog owl fox".split()))
    return {
        "corpus": write_corpus(root / "corpus.txt"), "quiet": quiet,
        "bert": encoder_dir(wordpiece_tokenizer([text for text, _ in SENTIMENT]), root / "bert"),
        "sentiment": write_csv(root / "sentiment.csv", sentiment_rows()), "pairs": pairs,
        "encoder": tiny_sentence_encoder_dir,
    }


def _command(verb: str, given: dict[str, Path]) -> list[str]:
    """A two- or three-step run of `verb` on the tiny inputs (dropout on: the bodies are BERT/GPT presets)."""
    pretrain = ["pretrain", "--data", given["corpus"], "--batch-size", "4", "--max-steps", "3", "--eval-batches", "1",
                "--config", given["quiet"], "--no-progress", *TINY_MODEL]
    if verb == "pretrain-decoder":
        return [*pretrain, "--arch", "decoder", "--tokenizer", "bpe", "--vocab-size", "300", "--block-size", "16"]
    if verb == "pretrain-encoder-nsp":
        return [*pretrain, "--arch", "encoder", "--tokenizer", "wordpiece", "--vocab-size", "120", "--block-size", "24"]
    if verb == "finetune-classify":
        return ["finetune", "--task", "classify", "--model", given["bert"], "--data", given["sentiment"],
                "--dev-data", given["sentiment"], "--max-steps", "3", "--batch-size", str(FAST["batch_size"] // 2),
                "--lr", str(FAST["lr"]), "--warmup-ratio", "0", "--no-progress", "--device", "cpu"]
    return ["embed-train", "--model", given["encoder"], "--data", given["pairs"], "--max-steps", "2",
            "--batch-size", "4", "--warmup-steps", "0", "--lr", "1e-3", "--no-progress", "--device", "cpu"]


def _rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv as written (float text round-trips exactly), timing columns left out."""
    with (run / "metrics.csv").open(newline="") as handle:
        return [{key: value for key, value in row.items() if key not in TIMING} for row in csv.DictReader(handle)]


VERBS = ("pretrain-decoder", "pretrain-encoder-nsp", "finetune-classify", "embed-train")
SCRIPT = Path(__file__).with_name("hooked_cli.py")


def _in_one_process(commands: list[list[str]]) -> subprocess.Popen:
    words = [word for command in commands for word in ("--", *command)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), *words], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_same_seed_same_run_in_a_new_process_other_seed_other_run(inputs, tmp_path):
    commands = {verb: [*map(str, _command(verb, inputs)), "--seed", "7"] for verb in VERBS}
    forward = _in_one_process([[*commands[verb], "--out", str(tmp_path / "a" / verb)] for verb in VERBS])
    backward = _in_one_process([[*commands[verb], "--out", str(tmp_path / "b" / verb)] for verb in reversed(VERBS)])
    for process in (forward, backward):
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
    for verb in VERBS:
        first, second = _rows(tmp_path / "a" / verb), _rows(tmp_path / "b" / verb)
        assert len(first) >= 2 and all(row["loss"] for row in first), verb
        assert first == second, verb

        other = run_cli(*commands[verb][:-1], "8", "--out", tmp_path / "other-seed" / verb)
        assert other.returncode == 0, other.stderr
        assert [row["loss"] for row in _rows(tmp_path / "other-seed" / verb)] != [row["loss"] for row in first], verb


@pytest.fixture()
def restore_determinism():
    flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2], flags[3]


def test_deterministic_option_switches_on_deterministic_kernels(inputs, tmp_path, monkeypatch, restore_determinism):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a value the user set is kept
    torch.use_deterministic_algorithms(False)
    result = run_cli(*map(str, _command("pretrain-decoder", inputs)), "--max-steps", "1", "--deterministic",
                     "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["train"]["deterministic"] is True
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    use_deterministic_kernels()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
