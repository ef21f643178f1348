"""GPT-2 parity: random-init transformers GPT-2 models load into polyformer (and back) unchanged."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import polyformer as pf
from polyformer.config import preset
from polyformer.core import KVCache
from polyformer.errors import ConfigError
from polyformer.io.hf import gpt2

VOCAB = 97
SHAPES = {
    "gelu_new-tied": dict(n_embd=32, n_head=4, n_layer=2),
    "odd-untied": dict(n_embd=36, n_head=3, n_layer=3, n_inner=50, activation_function="gelu", tie_word_embeddings=False),
}


def perturb(model: torch.nn.Module) -> None:
    """Move every trainable weight off its initial value so biases and norms are tested too."""
    torch.manual_seed(2)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)


def hf_gpt2(cls_name: str, shape: dict, directory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=48, bos_token_id=1, eos_token_id=2, **shape)
    model = getattr(transformers, cls_name)(config).eval()
    perturb(model)
    model.save_pretrained(directory)
    return model


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three right-padded sequences of lengths 11, 7 and 4."""
    torch.manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def max_diff(ref, ours, cls_name: str, mask: torch.Tensor) -> float:
    if cls_name == "GPT2Model":
        return (ref.last_hidden_state - ours.last_hidden_state)[mask.bool()].abs().max().item()
    return (ref.logits - ours.logits)[mask.bool()].abs().max().item()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("cls_name", ["GPT2LMHeadModel", "GPT2Model"])
def test_gpt2_import_parity(cls_name, shape, tmp_path):
    ref_model = hf_gpt2(cls_name, shape, tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    assert model.config.head == ("lm" if cls_name == "GPT2LMHeadModel" else "none")
    ids, mask = padded_batch()
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=mask)
        ours = model(ids, attention_mask=mask)
    assert max_diff(ref, ours, cls_name, mask) <= 1e-4


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("cls_name", ["GPT2LMHeadModel", "GPT2Model"])
def test_gpt2_export_round_trip(cls_name, shape, tmp_path):
    hf_gpt2(cls_name, shape, tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    pf.save(model, tmp_path / "out", format="hf")
    reloaded = getattr(transformers, cls_name).from_pretrained(tmp_path / "out").eval()
    ids, mask = padded_batch()
    with torch.no_grad():
        again = reloaded(input_ids=ids, attention_mask=mask)
        ours = model(ids, attention_mask=mask)
    assert max_diff(again, ours, cls_name, mask) <= 1e-4


def test_gpt2_file_without_prefix_and_mask_buffers(tmp_path):
    """A file with no `transformer.` prefix and the old causal-mask buffers still loads."""
    from safetensors.torch import load_file, save_file

    ref_model = hf_gpt2("GPT2LMHeadModel", SHAPES["gelu_new-tied"], tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    state = {name.removeprefix("transformer."): tensor for name, tensor in load_file(path).items()}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 48, 48))
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, path)
    model = pf.load(tmp_path / "hf")
    ids, mask = padded_batch()
    with torch.no_grad():
        assert max_diff(ref_model(input_ids=ids, attention_mask=mask), model(ids, mask), "GPT2LMHeadModel", mask) <= 1e-4


def test_gpt2_cached_decoding_matches_full_forward(tmp_path):
    hf_gpt2("GPT2LMHeadModel", SHAPES["odd-untied"], tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    ids, _ = padded_batch()
    cache = KVCache()
    with torch.no_grad():
        full = model(ids).logits
        steps = [model(ids[:, :5], cache=cache).logits]
        steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(5, ids.shape[1])]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-4


@pytest.mark.parametrize("field", ["scale_attn_by_inverse_layer_idx", "add_cross_attention"])
def test_gpt2_unsupported_option_is_named(field, tmp_path):
    with pytest.raises(ConfigError, match=field):
        gpt2.config_from_hf({"model_type": "gpt2", field: True})


def test_gpt2_export_accepts_only_gpt2_shapes():
    gpt2.config_to_hf(preset("gpt-tiny"))
    for name in ("llama-tiny", "bert-tiny", "transformer-small"):
        with pytest.raises(ConfigError):
            gpt2.config_to_hf(preset(name))


def test_polyformer_built_model_exports_to_gpt2(tmp_path):
    """A model built (not loaded) in polyformer saves as a folder GPT2LMHeadModel reproduces."""
    torch.manual_seed(0)
    model = pf.PolyformerModel(preset("gpt-tiny", vocab_size=VOCAB, hidden_size=32, num_layers=2, max_positions=32)).eval()
    perturb(model)
    pf.save(model, tmp_path / "out", format="hf")
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    ids, mask = padded_batch()
    with torch.no_grad():
        assert max_diff(reloaded(input_ids=ids, attention_mask=mask), model(ids, mask), "GPT2LMHeadModel", mask) <= 1e-4
