"""`pretrain --init MODEL`: continued pretraining starts from the checkpoint's weights, with its own tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import polyformer as pf
from polyformer.training.pretrain import PretrainSpec, run
from tests.cli_runner import assert_one_line_error, run_cli
from tests.task_tiny import bpe_tokenizer, decoder_dir

LINES = ["the king and the queen went to the castle", "a sword and a shield for the knight",
         "the knight rode to the castle with the king"]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join("\n".join(LINES[i:] + LINES[:i]) for i in range(3)) * 4 + "\n")
    return path


def _tiny_steps(**fields) -> dict:
    return {"max_steps": 1, "lr": 1e-12, "warmup_steps": 0, "eval_batches": 1, "progress": False, **fields}


def test_a_decoder_continues_from_its_weights_and_tokenizer(corpus: Path, tmp_path: Path) -> None:
    tokenizer = bpe_tokenizer(LINES)
    start = decoder_dir(tokenizer, tmp_path / "start")
    spec = PretrainSpec(init=str(start), data=[str(corpus)], block_size=16, batch_size=4, train=_tiny_steps())
    run(spec, tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "pretrain.yaml").read_text())
    assert saved["arch"] == "decoder" and saved["init"] == str(start)
    assert pf.load_tokenizer(tmp_path / "run" / "model").get_vocab() == tokenizer.get_vocab()
    before, after = pf.load(start).state_dict(), pf.load(tmp_path / "run" / "model").state_dict()
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[name], after[name], atol=1e-6) for name in before)  # lr 1e-12: one step moves nothing


def test_minilm_continues_with_a_fresh_mlm_head(corpus: Path, tmp_path: Path, minilm_dir: Path) -> None:
    spec = PretrainSpec(init=str(minilm_dir), data=[str(corpus)], nsp=False, block_size=16, batch_size=2,
                        train=_tiny_steps())
    run(spec, tmp_path / "run")
    model = pf.load(tmp_path / "run" / "model")
    assert model.config.arch == "encoder" and model.config.head == "mlm"
    body = pf.load(minilm_dir).state_dict()
    name = next(n for n in body if n.startswith("body.stack.blocks.0.") and n.endswith("weight"))
    assert torch.allclose(model.state_dict()[name], body[name], atol=1e-6), name
    assert "masked-lm" in (tmp_path / "run" / "run.yaml").read_text()


def test_arch_must_match_the_checkpoint(corpus: Path, tmp_path: Path) -> None:
    start = decoder_dir(bpe_tokenizer(LINES), tmp_path / "start")
    result = run_cli("pretrain", "--init", start, "--arch", "encoder", "--data", corpus, "--out", tmp_path / "run")
    assert_one_line_error(result, "arch='encoder'", "holds a decoder model", "--init")
