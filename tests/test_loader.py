"""`pf.load` on every layout it recognises, including catalog names of sentence-transformers folders."""

from __future__ import annotations

import json

import torch
from cli_runner import run_cli

import polyformer as pf


def test_load_catalog_sentence_transformers_model(minilm_dir):
    model = pf.load("all-MiniLM-L6-v2")
    assert model.config.arch == "encoder" and model.config.hidden_size == 384 and model.config.num_layers == 6
    tokenizer = pf.load_tokenizer("all-MiniLM-L6-v2")
    batch = tokenizer(["a gripping thriller", "dull"])
    out = model(batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    assert out.last_hidden_state.shape == (2, batch["input_ids"].shape[1], 384)
    assert torch.isfinite(out.last_hidden_state).all()


def test_info_on_catalog_names(minilm_dir, smollm2_gguf):
    minilm = run_cli("info", "all-MiniLM-L6-v2", "--json")
    assert minilm.returncode == 0, minilm.stderr
    summary = json.loads(minilm.stdout)
    assert summary["arch"] == "encoder" and 22_000_000 < summary["parameters"] < 23_000_000
    smol = run_cli("info", "SmolLM2-135M-Instruct", "--json")
    assert smol.returncode == 0, smol.stderr
    summary = json.loads(smol.stdout)
    assert summary["arch"] == "decoder" and summary["kv_heads"] == 3 and summary["heads"] == 9
    assert "Q4_1" in summary["stored_dtypes"] and summary["dtype"] == "float32"
