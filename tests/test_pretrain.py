"""`polyformer pretrain` end to end on tiny corpora: all three forms, YAML configs, resume, errors."""

from __future__ import annotations

import json

import pytest
import torch

import polyformer as pf
from cli_runner import assert_one_line_error, run_cli
from polyformer.training.logging import read_metrics
from train_tiny import TINY_MODEL, write_corpus

TINY = [*TINY_MODEL, "--no-progress", "--eval-batches", "2", "--seed", "3"]


@pytest.fixture()
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.txt")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_decoder_char_pretraining_and_resume(corpus, tmp_path):
    out = tmp_path / "gpt"
    args = ["pretrain", "--arch", "decoder", "--tokenizer", "char", "--data", corpus, "--block-size", "16",
            "--batch-size", "4", "--lr", "3e-3", "--schedule", "constant", "--save-every", "2", *TINY, "--out", out]
    result = run_cli(*args, "--max-steps", "4")
    assert result.returncode == 0, result.stderr
    model = pf.load(out / "model")
    tokenizer = pf.load_tokenizer(out / "model")
    assert model.config.arch == "decoder" and model.config.vocab_size == tokenizer.vocab_size
    first = read_metrics(out / "metrics.csv")
    assert [row["step"] for row in first] == [1, 2, 3, 4]
    # continue the same run to 6 steps: the first 4 rows stay, 2 more follow
    resumed = run_cli("pretrain", "--resume", out, "--max-steps", "6", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    rows = read_metrics(out / "metrics.csv")
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row["loss"] for row in rows[:4]] == [row["loss"] for row in first]
    # a second run into the same directory without --resume is refused
    assert_one_line_error(run_cli(*args, "--max-steps", "4"), "--resume")


def test_encoder_mlm_nsp_pretraining(corpus, tmp_path):
    out = tmp_path / "bert"
    result = run_cli("pretrain", "--arch", "encoder", "--tokenizer", "wordpiece", "--vocab-size", "120",
                     "--data", corpus, "--block-size", "24", "--batch-size", "4", "--max-steps", "3", *TINY, "--out", out)
    assert result.returncode == 0, result.stderr
    model = pf.load(out / "model")
    assert model.config.head == "pretraining"
    metrics = read_metrics(out / "metrics.csv")[-1]
    assert {"mlm_loss", "nsp_loss", "eval_mlm_accuracy", "eval_nsp_accuracy"} <= set(metrics)
    from polyformer.tasks import fill_mask

    predictions = fill_mask(model, pf.load_tokenizer(out / "model"), "to be or [MASK] to be", top_k=2)
    assert len(predictions) == 1 and len(predictions[0]) == 2


def test_encoder_decoder_seq2seq_from_yaml(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"text_a": f"count {i} {i + 1}", "text_b": f"next {i + 2}"} for i in range(40)]
    pairs.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(
        "arch: encoder-decoder\ntokenizer: bpe\nvocab_size: 300\nblock_size: 16\nbatch_size: 4\n"
        f"data: [{pairs}]\nlabel_smoothing: 0.1\ntrain:\n  max_steps: 5\n  lr: 0.001\n"
    )
    out = tmp_path / "seq2seq"
    result = run_cli("pretrain", "--config", config, "--max-steps", "3", *TINY, "--out", out)  # CLI overrides YAML
    assert result.returncode == 0, result.stderr
    assert len(read_metrics(out / "metrics.csv")) == 3
    model = pf.load(out / "model")
    assert model.config.arch == "encoder-decoder" and model.config.head == "lm"


def test_pretraining_bad_inputs(corpus, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert_one_line_error(run_cli("pretrain", "--tokenizer", "char", "--data", empty, *TINY, "--out", tmp_path / "a"), "empty")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc\n\ncab\n\nbca\n")
    assert_one_line_error(
        run_cli("pretrain", "--tokenizer", "char", "--data", tiny, "--block-size", "64", *TINY, "--out", tmp_path / "b"),
        "block",
    )
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("arch: decoder\nblock_sise: 3\n")
    assert_one_line_error(run_cli("pretrain", "--config", bad_yaml, "--out", tmp_path / "c"), "block_sise")
    assert_one_line_error(run_cli("pretrain", "--resume", tmp_path / "nothing-here"), "nothing to resume")


def test_resume_with_mismatched_config_is_refused(corpus, tmp_path):
    out = tmp_path / "gpt"
    base = ["pretrain", "--tokenizer", "char", "--data", corpus, "--block-size", "16", "--batch-size", "4", *TINY]
    assert run_cli(*base, "--max-steps", "2", "--out", out).returncode == 0
    spec = out / "pretrain.yaml"
    spec.write_text(spec.read_text().replace("block_size: 16", "block_size: 12"))
    assert_one_line_error(run_cli("pretrain", "--resume", out, "--max-steps", "4", "--no-progress"), "batch")
