"""Marian family (MarianModel, MarianMTModel) ↔ polyformer.

Marian is the original Transformer layout: post-norm LayerNorm encoder and decoder, fixed
sinusoidal positions (sines in the first half of each vector, cosines in the second), embeddings
scaled by sqrt(d_model), no embedding or final norm, and one token embedding shared by encoder,
decoder and output projection. Its `final_logits_bias` (a (1, V) buffer) is our LM head's bias.

Files differ in which copies of the shared embedding they store (`model.shared`,
`model.{encoder,decoder}.embed_tokens`, `lm_head`) and whether they store the sinusoid tables
(`embed_positions`); `_normalize` reduces every variant to one `model.shared.weight`, checks
stored tables against ours, and drops them. Exports write neither: transformers ties the copies
and regenerates the tables itself.
"""

from __future__ import annotations

import torch

from polyformer.config import ModelConfig
from polyformer.core.positions import sinusoidal_table
from polyformer.errors import CheckpointError, ConfigError
from polyformer.io.hf.common import Family, Rule, kv_sizes, qkv_sizes, rule
from polyformer.io.hf.dialect import Dialect, add_prefix

DIALECT = Dialect(
    name="marian",
    shape="Marian",
    architectures={"MarianModel": "none", "MarianMTModel": "lm"},
    activation_field="activation_function",
    activations={"swish": "silu", "silu": "silu", "gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu"},
    export_activations={"silu": "swish", "gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu"},
    layout=dict(arch="encoder-decoder", norm="layernorm", norm_placement="post", norm_eps=1e-5, final_norm=False,
                embedding_norm=False, position="sinusoidal", type_vocab_size=0, attention_bias=True, mlp_bias=True,
                pooler=False, tie_word_embeddings=True),
    # fields of older (BART-style) Marian configs, and the only values transformers' Marian implements
    fixed={"share_encoder_decoder_embeddings": True, "tie_word_embeddings": True, "normalize_before": False,
           "normalize_embedding": False, "add_final_layer_norm": False, "static_position_embeddings": True},
    default_activation="gelu",
    same_head_sizes=True,
    special_tokens={"pad_token_id": 58100, "eos_token_id": 0, "bos_token_id": None},
)
_ALIASES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
_BASE_PREFIXES = ("shared.", "encoder.", "decoder.")  # MarianModel files have no `model.` prefix
_TABLE_TOLERANCE = 1e-3  # stored tables may be half precision


def _same_on_both_sides(hf: dict, encoder_key: str, decoder_key: str, default: int) -> int:
    value, other = hf.get(encoder_key, default), hf.get(decoder_key, default)
    if other != value:
        raise ConfigError(
            f"{decoder_key}={other} differs from {encoder_key}={value}; polyformer's encoder and decoder share these sizes"
        )
    return value


def config_from_hf(hf: dict) -> ModelConfig:
    fields = DIALECT.read(hf)
    vocab = hf.get("vocab_size", 58101)
    if hf.get("decoder_vocab_size") not in (None, vocab):
        raise ConfigError(
            f"decoder_vocab_size={hf['decoder_vocab_size']} differs from vocab_size={vocab}; the vocabulary must be shared"
        )
    return ModelConfig(
        **fields,
        vocab_size=vocab,
        hidden_size=hf.get("d_model", 1024),
        num_layers=hf.get("encoder_layers", 12),
        num_decoder_layers=hf.get("decoder_layers", 12),
        num_heads=_same_on_both_sides(hf, "encoder_attention_heads", "decoder_attention_heads", 16),
        intermediate_size=_same_on_both_sides(hf, "encoder_ffn_dim", "decoder_ffn_dim", 4096),
        max_positions=hf.get("max_position_embeddings", 1024),
        scale_embeddings=hf.get("scale_embedding", False),
        dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.0),
        lm_head_bias=fields["head"] == "lm",
        decoder_start_token_id=hf.get("decoder_start_token_id", 58100),
        extra={"forced_eos_token_id": hf.get("forced_eos_token_id", 0)},
    )


def config_to_hf(config: ModelConfig) -> dict:
    written = DIALECT.write(config)
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.pad_token_id
    if start is None:
        raise ConfigError("Marian needs decoder_start_token_id (or pad_token_id, its usual value)")
    return {
        **written,
        "vocab_size": config.vocab_size,
        "decoder_vocab_size": config.vocab_size,
        "d_model": config.hidden_size,
        "encoder_layers": config.num_layers,
        "decoder_layers": config.decoder_layers,
        "encoder_attention_heads": config.num_heads,
        "decoder_attention_heads": config.num_heads,
        "encoder_ffn_dim": config.ffn_size,
        "decoder_ffn_dim": config.ffn_size,
        "max_position_embeddings": config.max_positions,
        "scale_embedding": config.scale_embeddings,
        "dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": True,
        "is_encoder_decoder": True,
        "decoder_start_token_id": start,
        "forced_eos_token_id": config.extra.get("forced_eos_token_id", config.eos_token_id),
    }


def _check_table(name: str, table: torch.Tensor) -> None:
    """A stored sinusoid table must be the one polyformer computes, or the positions differ."""
    expected = sinusoidal_table(*table.shape)
    if (table.float() - expected).abs().max() > _TABLE_TOLERANCE:
        raise CheckpointError(f"{name} is not Marian's sinusoidal table (sines then cosines); positions would differ")


def _normalize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One `model.shared.weight`, validated tables dropped, a zero `final_logits_bias` if absent."""
    state = add_prefix(state, "model.", _BASE_PREFIXES)
    for name in [name for name in state if name.endswith("embed_positions.weight")]:
        _check_table(name, state.pop(name))
    aliases = [name for name in _ALIASES if name in state]
    if "model.shared.weight" not in state and aliases:
        state["model.shared.weight"] = state[aliases[0]]
    for name in aliases:
        state.pop(name)
    if "final_logits_bias" not in state and "model.shared.weight" in state:  # transformers starts it at zero
        state["final_logits_bias"] = torch.zeros(1, state["model.shared.weight"].shape[0])
    return state


def _flatten(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1)  # (1, V) → (V,)


def _as_row(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(1, -1)  # (V,) → (1, V)


def _layer_rules(ours: str, theirs: str, layers: str, cross: bool) -> list[Rule]:
    """One encoder or decoder layer; `ours` / `theirs` are the block prefixes with `{i}`."""
    pairs = [
        ("attn.out", "self_attn.out_proj"), ("attn_norm", "self_attn_layer_norm"),
        ("mlp.up", "fc1"), ("mlp.down", "fc2"), ("mlp_norm", "final_layer_norm"),
    ]
    if cross:
        pairs += [
            ("cross_attn.q", "encoder_attn.q_proj"), ("cross_attn.out", "encoder_attn.out_proj"),
            ("cross_norm", "encoder_attn_layer_norm"),
        ]
    rules: list[Rule] = []
    for kind in ("weight", "bias"):
        qkv = (f"{theirs}self_attn.{p}_proj.{kind}" for p in "qkv")
        rules.append(rule(f"{ours}attn.qkv.{kind}", *qkv, layers=layers, split=qkv_sizes))
        if cross:
            kv = (f"{theirs}encoder_attn.{p}_proj.{kind}" for p in "kv")
            rules.append(rule(f"{ours}cross_attn.kv.{kind}", *kv, layers=layers, split=kv_sizes))
        rules += [rule(f"{ours}{a}.{kind}", f"{theirs}{b}.{kind}", layers=layers) for a, b in pairs]
    return rules


def _rules(config: ModelConfig) -> list[Rule]:
    rules = [rule("body.embeddings.tokens.weight", "model.shared.weight")]
    rules += _layer_rules("body.encoder.blocks.{i}.", "model.encoder.layers.{i}.", "encoder", cross=False)
    rules += _layer_rules("body.decoder.blocks.{i}.", "model.decoder.layers.{i}.", "decoder", cross=True)
    if config.head == "lm":
        rules.append(rule("head.proj.bias", "final_logits_bias", to_ours=_flatten, to_theirs=_as_row))
    return rules


FAMILY = Family.of(
    DIALECT, config_from_hf, config_to_hf, _rules,
    normalize=_normalize,
    ignore=(r"^final_logits_bias$",),  # MarianModel has no LM head to use it
)
