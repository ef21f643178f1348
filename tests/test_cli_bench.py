"""`polyformer bench`: one quick run per task on tiny models (the table and JSON it writes; no timings asserted)."""

from __future__ import annotations

import json

import gguf
import pytest
import torch
import transformers
from cli_runner import assert_one_line_error, run_cli
from test_gguf import TINY, write_tiny_gguf


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**TINY, "tie_word_embeddings": True})).eval()
    path = tmp_path_factory.mktemp("bench") / "tiny-q4_0.gguf"
    write_tiny_gguf(path, model, qtype=gguf.GGMLQuantizationType.Q4_0)
    return path


def test_decode_bench_compares_the_files_blocks_with_float32(tiny_gguf, tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--model", tiny_gguf, "--dtype", "native,float32", "--batch", "2", "--prompt-tokens", "5",
                     "--new-tokens", "3", "--repeats", "1", "--no-peers", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "| polyformer native |" in result.stdout and "| polyformer float32 |" in result.stdout
    record = json.loads(out.read_text())
    assert record["task"] == "decode" and record["batch"] == 2
    native, dense = record["contenders"]["polyformer native"], record["contenders"]["polyformer float32"]
    assert native["tokens_per_s"] > 0 and dense["ttft_ms"] > 0 and record["peak_rss_mb"] > 0
    assert native["agreement_with_first"] == {"identical_rows": 2, "rows": 2, "prefix_fraction": 1.0}
    assert dense["agreement_with_first"]["rows"] == 2


def test_encode_bench_reports_rates_and_cosines(tiny_sentence_encoder_dir, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("a short line\nanother rather longer line of text\nthird\n", encoding="utf-8")
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--model", tiny_sentence_encoder_dir, "--task", "encode", "--dtype", "float32,int8",
                     "--input", texts, "--repeats", "1", "--no-peers", "--json", out)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["texts"] == 3 and set(record["contenders"]) == {"polyformer float32", "polyformer int8"}
    assert record["contenders"]["polyformer float32"]["cosine_min"] == pytest.approx(1.0, abs=1e-6)
    assert 0.9 < record["contenders"]["polyformer int8"]["cosine_min"] <= 1.0 + 1e-6


def test_bad_bench_options_are_one_line_errors(tiny_sentence_encoder_dir):
    assert_one_line_error(run_cli("bench", "--model", tiny_sentence_encoder_dir, "--task", "train"), "--task", "decode, encode")
    assert_one_line_error(run_cli("bench", "--model", tiny_sentence_encoder_dir, "--task", "decode", "--dtype", "native",
                                  "--no-peers"), "native", "GGUF")
