"""Marian parity: random-init transformers Marian models load into polyformer and back unchanged."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import polyformer as pf
from polyformer.config import preset
from polyformer.core import KVCache
from polyformer.errors import CheckpointError, ConfigError
from polyformer.io.hf import marian

VOCAB, PAD = 101, 100
SHAPES = {
    "swish-scaled": dict(activation_function="swish", scale_embedding=True),
    "gelu-unscaled": dict(activation_function="gelu", scale_embedding=False),
}


def hf_marian(cls_name: str, shape: dict, directory):
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
        pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=0, forced_eos_token_id=0, **shape,
    )
    model = getattr(transformers, cls_name)(config).eval()
    torch.manual_seed(2)
    with torch.no_grad():  # move weights off their initial values so biases and norms are tested too
        for param in model.parameters():
            if param.requires_grad:  # not the fixed sinusoid tables
                param.add_(torch.randn_like(param) * 0.05)
        if cls_name == "MarianMTModel":
            model.final_logits_bias.normal_(0, 0.5)
    model.save_pretrained(directory)
    return model


def batch() -> dict[str, torch.Tensor]:
    """Right-padded sources (lengths 10, 6, 3) and decoder inputs (lengths 7, 4, 7)."""
    torch.manual_seed(1)
    src, tgt = torch.randint(1, PAD, (3, 10)), torch.randint(1, PAD, (3, 7))
    src_mask, tgt_mask = torch.ones_like(src), torch.ones_like(tgt)
    src_mask[1, 6:], src_mask[2, 3:], tgt_mask[1, 4:] = 0, 0, 0
    tgt[:, 0] = PAD  # decoder_start_token_id
    return dict(
        input_ids=src.masked_fill(src_mask == 0, PAD), attention_mask=src_mask,
        decoder_input_ids=tgt.masked_fill(tgt_mask == 0, PAD), decoder_attention_mask=tgt_mask,
    )


def run_both(ref_model, model) -> tuple:
    inputs = batch()
    with torch.no_grad():
        return ref_model(**inputs), model(**inputs), inputs


def assert_same(ref, ours, inputs) -> None:
    live_src, live_tgt = inputs["attention_mask"].bool(), inputs["decoder_attention_mask"].bool()
    assert (ref.encoder_last_hidden_state - ours.encoder_last_hidden_state)[live_src].abs().max() <= 1e-4
    if getattr(ref, "logits", None) is not None:
        assert (ref.logits - ours.logits)[live_tgt].abs().max() <= 1e-4
    else:
        assert (ref.last_hidden_state - ours.last_hidden_state)[live_tgt].abs().max() <= 1e-4


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("cls_name", ["MarianMTModel", "MarianModel"])
def test_marian_import_parity(cls_name, shape, tmp_path):
    ref_model = hf_marian(cls_name, shape, tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    assert (model.config.num_layers, model.config.decoder_layers) == (2, 3)
    assert_same(*run_both(ref_model, model))


@pytest.mark.parametrize("cls_name", ["MarianMTModel", "MarianModel"])
def test_marian_export_round_trip(cls_name, tmp_path):
    hf_marian(cls_name, SHAPES["swish-scaled"], tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    pf.save(model, tmp_path / "out", format="hf")
    reloaded = getattr(transformers, cls_name).from_pretrained(tmp_path / "out").eval()
    assert_same(*run_both(reloaded, model))


def test_marian_older_file_with_embedding_copies(tmp_path):
    """Files that store encoder/decoder/lm_head copies of the embeddings instead of `model.shared`."""
    from safetensors.torch import load_file, save_file

    ref_model = hf_marian("MarianMTModel", SHAPES["swish-scaled"], tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(path)
    shared = state.pop("model.shared.weight")
    for name in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"):
        state[name] = shared.clone()
    save_file(state, path)
    assert_same(*run_both(ref_model, pf.load(tmp_path / "hf")))


def test_marian_rejects_a_wrong_position_table(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_marian("MarianModel", SHAPES["gelu-unscaled"], tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(path)
    assert "encoder.embed_positions.weight" in state  # MarianModel stores its tables
    state["encoder.embed_positions.weight"] = state["encoder.embed_positions.weight"].roll(1, dims=1)
    save_file(state, path)
    with pytest.raises(CheckpointError, match="embed_positions"):
        pf.load(tmp_path / "hf")


def test_marian_cached_decoding_matches_full_forward(tmp_path):
    hf_marian("MarianMTModel", SHAPES["swish-scaled"], tmp_path / "hf")
    model = pf.load(tmp_path / "hf")
    inputs = batch()
    src, mask, tgt = inputs["input_ids"], inputs["attention_mask"], inputs["decoder_input_ids"]
    cache = KVCache()
    with torch.no_grad():
        full = model(src, mask, decoder_input_ids=tgt).logits
        first = model(src, mask, decoder_input_ids=tgt[:, :3], cache=cache)
        memory = first.encoder_last_hidden_state
        steps = [first.logits] + [
            model(src, mask, decoder_input_ids=tgt[:, t : t + 1], cache=cache, encoder_hidden_states=memory).logits
            for t in range(3, tgt.shape[1])
        ]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-4


@pytest.mark.parametrize(
    "hf, field",
    [
        ({"share_encoder_decoder_embeddings": False}, "share_encoder_decoder_embeddings"),
        ({"tie_word_embeddings": False}, "tie_word_embeddings"),
        ({"normalize_before": True}, "normalize_before"),
        ({"decoder_attention_heads": 8, "encoder_attention_heads": 4}, "decoder_attention_heads"),
        ({"decoder_ffn_dim": 64, "encoder_ffn_dim": 48}, "decoder_ffn_dim"),
        ({"vocab_size": 101, "decoder_vocab_size": 50}, "decoder_vocab_size"),
        ({"activation_function": "tanh"}, "activation_function"),
    ],
)
def test_marian_unsupported_option_is_named(hf, field):
    with pytest.raises(ConfigError, match=field):
        marian.config_from_hf({"model_type": "marian", **hf})


def test_marian_export_accepts_only_marian_shapes():
    marian.config_to_hf(preset("transformer-small"))
    for name in ("gpt-tiny", "llama-tiny", "bert-tiny"):
        with pytest.raises(ConfigError):
            marian.config_to_hf(preset(name))
    with pytest.raises(ConfigError, match="norm_eps"):
        marian.config_to_hf(preset("transformer-small", norm_eps=1e-6))


def test_polyformer_built_model_exports_to_marian(tmp_path):
    """A model built (not loaded) in polyformer saves as a folder MarianMTModel reproduces."""
    torch.manual_seed(0)
    config = preset("transformer-small", vocab_size=VOCAB, hidden_size=32, num_layers=2, num_decoder_layers=3,
                    intermediate_size=40, pad_token_id=PAD, decoder_start_token_id=PAD, max_positions=64)
    model = pf.PolyformerModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    pf.save(model, tmp_path / "out", format="hf")
    reloaded = transformers.MarianMTModel.from_pretrained(tmp_path / "out").eval()
    assert_same(*run_both(reloaded, model))
