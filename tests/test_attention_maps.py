"""Attention maps: the explicit path equals SDPA, weights are distributions, causal maps are triangular.

`recording_attention` switches a model's attention modules to softmax(QKᵀ/√d + mask)·V and records
the weights; the model's outputs must not change (bidirectional with padding, causal, a cached
decode step, cross-attention, grouped-query heads). `attention_maps` / `polyformer attention`
draw them with the tokens on the axes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_runner import assert_one_line_error, run_cli
from PIL import Image
from task_tiny import SMALL, bpe_tokenizer, decoder_dir, seq2seq_dir, wordpiece_tokenizer

import polyformer as pf
from polyformer.compare.attention import attention_maps, plot_maps
from polyformer.core import KVCache
from polyformer.core.attention import recording_attention

TEXTS = ["the quality of mercy is not strained", "it droppeth as the gentle rain from heaven",
         "upon the place beneath it is twice blest"]


def _model(name: str, **overrides) -> pf.PolyformerModel:
    torch.manual_seed(0)
    return pf.PolyformerModel(pf.preset(name, vocab_size=97, **{**SMALL, **overrides})).eval()


def _same_with_and_without_recording(model, **inputs):
    with torch.no_grad():
        fast = model(**inputs)
        with recording_attention(model) as records:
            explicit = model(**inputs)
    torch.testing.assert_close(explicit.last_hidden_state, fast.last_hidden_state, rtol=1e-5, atol=1e-5)
    return records


def test_explicit_path_equals_sdpa_bidirectional_causal_gqa_and_cross():
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0  # padding
    records = _same_with_and_without_recording(_model("bert-tiny"), input_ids=ids, attention_mask=mask)
    assert len(records) == 2 and records[0].weights.shape == (2, 2, 9, 9)
    assert float(records[0].weights[1, :, :, 6:].abs().max()) == 0.0  # padded keys get no weight
    records = _same_with_and_without_recording(_model("llama-tiny", num_heads=4, num_kv_heads=2), input_ids=ids)
    assert records[0].weights.shape == (2, 4, 9, 9)  # grouped-query: every query head has its map
    seq2seq = _model("transformer-small")
    decoder_ids = ids[:, :5]
    records = _same_with_and_without_recording(seq2seq, input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    cross = [r for r in records if r.module.cross]
    assert len(cross) == 2 and cross[0].weights.shape == (2, 2, 5, 9)
    assert float(cross[0].weights[1, :, :, 6:].abs().max()) == 0.0
    assert not any(module.recorder is not None for module in seq2seq.modules() if hasattr(module, "recorder"))


def test_explicit_path_equals_sdpa_in_a_cached_decode_step():
    model = _model("gpt-tiny")
    ids = torch.randint(0, 97, (1, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cache = KVCache()
        model(ids[:, :6], cache=cache)
        fast = model(ids[:, 6:], cache=cache).logits
        cache = KVCache()
        with recording_attention(model) as records:
            model(ids[:, :6], cache=cache)
            explicit = model(ids[:, 6:], cache=cache).logits
    torch.testing.assert_close(explicit, fast, rtol=1e-5, atol=1e-5)
    assert records[-1].weights.shape == (1, 2, 1, 7)  # the new token over all seven keys


def test_weights_are_distributions_and_causal_maps_are_zero_above_the_diagonal(tmp_path):
    tokenizer = bpe_tokenizer(TEXTS)
    decoder = pf.load(decoder_dir(tokenizer, tmp_path / "decoder"))
    maps = attention_maps(decoder, tokenizer, TEXTS[0])
    assert {m.kind for m in maps} == {"causal"} and [m.layer for m in maps] == [0, 1]
    tokens = tokenizer.encode(TEXTS[0])
    for item in maps:
        assert item.weights.shape == (4, len(tokens), len(tokens)) and len(item.query_tokens) == len(tokens)
        np.testing.assert_allclose(item.weights.sum(-1), 1.0, atol=1e-5)
        assert np.abs(np.triu(item.weights, k=1)).max() == 0.0
        rows, cols = np.tril_indices(len(tokens))
        assert item.weights[:, rows, cols].min() > 0.0  # every visible key gets some weight

    encoder_tokenizer = wordpiece_tokenizer(TEXTS)
    torch.manual_seed(0)
    encoder = pf.PolyformerModel(pf.preset("bert-tiny", vocab_size=encoder_tokenizer.vocab_size, **SMALL))
    bidirectional = attention_maps(encoder, encoder_tokenizer, TEXTS[1])
    assert {m.kind for m in bidirectional} == {"bidirectional"}
    assert bidirectional[0].query_tokens[0] == "[CLS]" and bidirectional[0].query_tokens[-1] == "[SEP]"
    assert np.triu(bidirectional[0].weights, k=1).max() > 0.0  # bidirectional: later tokens are seen
    np.testing.assert_allclose(bidirectional[0].weights.sum(-1), 1.0, atol=1e-5)


def test_encoder_decoder_maps_include_cross_attention_of_the_target_over_the_source(tmp_path):
    tokenizer = bpe_tokenizer(TEXTS)
    model = pf.load(seq2seq_dir(tokenizer, tmp_path / "mt"))
    maps = attention_maps(model, tokenizer, TEXTS[0], target=TEXTS[1])
    kinds = [(m.stack, m.kind) for m in maps]
    assert kinds == [("encoder", "bidirectional")] * 2 + [("decoder", "causal"), ("decoder", "cross")] * 2
    cross = maps[3]
    source, target = tokenizer.encode(TEXTS[0]), tokenizer.encode(TEXTS[1], add_special_tokens=False)
    assert cross.weights.shape == (2, len(target) + 1, len(source))  # the decoder start token + the target
    assert cross.key_tokens == maps[0].query_tokens
    np.testing.assert_allclose(cross.weights.sum(-1), 1.0, atol=1e-5)
    png = plot_maps(maps, tmp_path / "cross.png", kind="cross", layer=1)
    assert Image.open(tmp_path / "cross.png").size[0] > 200 and png[:4] == b"\x89PNG"


def test_cli_attention_draws_heatmaps_and_refuses_what_the_model_lacks(tmp_path):
    tokenizer = bpe_tokenizer(TEXTS)
    folder = decoder_dir(tokenizer, tmp_path / "decoder")
    result = run_cli("attention", "--model", folder, "--text", TEXTS[2], "--layer", "1", "--out", tmp_path / "maps.png",
                     "--json", tmp_path / "maps.json")
    assert result.returncode == 0, result.stderr
    image = Image.open(tmp_path / "maps.png")
    assert image.size[0] > 400 and len(image.convert("RGB").getcolors(1_000_000)) > 50
    assert (tmp_path / "maps.json").read_text().count('"kind": "causal"') == 2
    assert_one_line_error(run_cli("attention", "--model", folder, "--text", "x y", "--target", "z",
                                  "--out", tmp_path / "x.png"), "--target", "encoder-decoder")
    assert_one_line_error(run_cli("attention", "--model", folder, "--text", "x y", "--layer", "7",
                                  "--out", tmp_path / "x.png"), "--layer 7", "0..1")
    assert_one_line_error(run_cli("attention", "--model", folder, "--text", "x y", "--head", "9",
                                  "--out", tmp_path / "x.png"), "--head 9")
