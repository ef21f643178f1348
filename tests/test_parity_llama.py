"""Llama parity: random-init transformers Llama (and Mistral) models load into polyformer and back."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import polyformer as pf
from polyformer.config import preset
from polyformer.core import KVCache
from polyformer.errors import ConfigError
from polyformer.io.hf import gpt2, llama

VOCAB = 101
SHAPES = {
    "gqa4/2-theta1e5-tied": dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                                 intermediate_size=50, rope_theta=100000.0, tie_word_embeddings=True),
    "gqa6/2-theta5e5-untied": dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=2, num_hidden_layers=2,
                                   intermediate_size=77, rope_theta=500000.0, rms_norm_eps=1e-5),
    "head_dim-bias": dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=1, head_dim=12, num_hidden_layers=2,
                          intermediate_size=40, attention_bias=True, mlp_bias=True),
}


def perturb(model: torch.nn.Module) -> None:
    """Move every trainable weight off its initial value so biases and norms are tested too."""
    torch.manual_seed(2)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)


def hf_llama(cls_name: str, shape: dict, directory):
    torch.manual_seed(0)
    config_cls = transformers.MistralConfig if cls_name.startswith("Mistral") else transformers.LlamaConfig
    config = config_cls(vocab_size=VOCAB, max_position_embeddings=64, **shape)
    model = getattr(transformers, cls_name)(config).eval()
    perturb(model)
    model.save_pretrained(directory)
    return model


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three right-padded sequences of lengths 12, 9 and 5."""
    torch.manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def max_diff(ref, ours, mask: torch.Tensor) -> float:
    if getattr(ref, "logits", None) is None:
        return (ref.last_hidden_state - ours.last_hidden_state)[mask.bool()].abs().max().item()
    return (ref.logits - ours.logits)[mask.bool()].abs().max().item()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_llama_causal_lm_parity(shape, tmp_path):
    ref_model = hf_llama("LlamaForCausalLM", shape, tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    assert model.config.rope_theta == shape.get("rope_theta", 10000.0)
    ids, mask = padded_batch()
    with torch.no_grad():
        assert max_diff(ref_model(input_ids=ids, attention_mask=mask), model(ids, mask), mask) <= 1e-4


@pytest.mark.parametrize("cls_name", ["LlamaModel", "MistralForCausalLM"])
def test_llama_base_and_mistral_parity(cls_name, tmp_path):
    shape = dict(SHAPES["gqa4/2-theta1e5-tied"])
    if cls_name.startswith("Mistral"):
        shape["sliding_window"] = None
    ref_model = hf_llama(cls_name, shape, tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    ids, mask = padded_batch()
    with torch.no_grad():
        assert max_diff(ref_model(input_ids=ids, attention_mask=mask), model(ids, mask), mask) <= 1e-4


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_llama_export_round_trip(shape, tmp_path):
    hf_llama("LlamaForCausalLM", shape, tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    pf.save(model, tmp_path / "out", format="hf")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "llama"
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids, mask = padded_batch()
    with torch.no_grad():
        assert max_diff(reloaded(input_ids=ids, attention_mask=mask), model(ids, mask), mask) <= 1e-4


def test_llama_cached_decoding_matches_full_forward(tmp_path):
    hf_llama("LlamaForCausalLM", SHAPES["gqa6/2-theta5e5-untied"], tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    ids, _ = padded_batch()
    cache = KVCache()
    with torch.no_grad():
        full = model(ids).logits
        steps = [model(ids[:, :4], cache=cache).logits]
        steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(4, ids.shape[1])]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-4


@pytest.mark.parametrize(
    "hf, field",
    [
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}}, "rope_parameters"),
        ({"rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
        ({"hidden_act": "gelu_pytorch_tanh"}, "hidden_act"),
        ({"sliding_window": 16, "max_position_embeddings": 64}, "sliding_window"),
        ({"architectures": ["LlamaForSequenceClassification"]}, "architectures"),
    ],
)
def test_llama_unsupported_option_is_named(hf, field):
    with pytest.raises(ConfigError, match=field):
        llama.config_from_hf({"model_type": "llama", **hf})


def test_llama_rope_theta_from_either_place():
    assert llama.rope_theta({"rope_theta": 5e5, "rope_scaling": None}) == 5e5
    assert llama.rope_theta({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}) == 1e6
    assert llama.rope_theta({}) == 10000.0


def test_decoder_families_do_not_accept_each_other():
    llama.config_to_hf(preset("llama-tiny"))
    for name in ("gpt-tiny", "bert-tiny", "transformer-small"):
        with pytest.raises(ConfigError):
            llama.config_to_hf(preset(name))
    with pytest.raises(ConfigError):
        gpt2.config_to_hf(preset("llama-tiny"))


def test_polyformer_built_model_exports_to_llama(tmp_path):
    """A model built (not loaded) in polyformer saves as a folder LlamaForCausalLM reproduces."""
    torch.manual_seed(0)
    config = preset("llama-tiny", vocab_size=VOCAB, hidden_size=32, num_layers=2, intermediate_size=40, rope_theta=1e6)
    model = pf.PolyformerModel(config).eval()
    perturb(model)
    pf.save(model, tmp_path / "out", format="hf")
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids, mask = padded_batch()
    with torch.no_grad():
        assert max_diff(reloaded(input_ids=ids, attention_mask=mask), model(ids, mask), mask) <= 1e-4
