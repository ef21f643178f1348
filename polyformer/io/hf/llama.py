"""Llama family (LlamaModel, LlamaForCausalLM; Mistral without a sliding window) ↔ polyformer.

Llama is a pre-norm RMSNorm decoder with rotary positions, a gated MLP and grouped-query
attention. Its separate q/k/v and gate/up projections become our fused `qkv` and `up` by
concatenation along the output dimension (`split` undoes it on export). Rotary settings live in
`rope_parameters` (transformers v5) or in `rope_theta` / `rope_scaling` (older files); only
unscaled rotary positions are supported. Mistral shares Llama's layout and tensor names; it
differs only by a sliding attention window, accepted when absent or wider than the context.
"""

from __future__ import annotations

from polyformer.config import ModelConfig
from polyformer.errors import ConfigError
from polyformer.io.hf.common import Family, Rule, halves, qkv_sizes, rule
from polyformer.io.hf.dialect import Dialect, add_prefix

DIALECT = Dialect(
    name="llama",
    shape="Llama",
    architectures={"LlamaModel": "none", "LlamaForCausalLM": "lm", "MistralModel": "none", "MistralForCausalLM": "lm"},
    export_heads={"none": "LlamaModel", "lm": "LlamaForCausalLM"},
    activation_field="hidden_act",
    activations={"silu": "swiglu", "swish": "swiglu", "gelu": "geglu"},  # hidden_act gates the MLP
    export_activations={"swiglu": "silu", "geglu": "gelu"},
    layout=dict(arch="decoder", norm="rmsnorm", norm_placement="pre", final_norm=True, embedding_norm=False,
                position="rotary", type_vocab_size=0, scale_embeddings=False, lm_head_bias=False, pooler=False),
    default_activation="silu",
    model_types=("llama", "mistral"),
    special_tokens={"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None},
)


def rope_theta(hf: dict) -> float:
    """The rotary base, refusing scaled variants (llama3, linear, dynamic, yarn, ...)."""
    for field in ("rope_parameters", "rope_scaling"):
        params = hf.get(field) or {}
        kind = params.get("rope_type", params.get("type", "default"))
        if kind not in ("default", None):
            raise ConfigError(f"{field}.rope_type={kind!r} is not supported (only unscaled 'default' rotary positions)")
    params = hf.get("rope_parameters") or {}
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _check_window(hf: dict, max_positions: int) -> None:
    window = hf.get("sliding_window")
    if window is not None and window < max_positions:
        raise ConfigError(
            f"sliding_window={window} is not supported (it limits attention within max_position_embeddings="
            f"{max_positions}); polyformer attends over the whole context"
        )


def config_from_hf(hf: dict) -> ModelConfig:
    fields = DIALECT.read(hf)
    hidden, heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    max_positions = hf.get("max_position_embeddings", 2048)
    _check_window(hf, max_positions)
    head_dim = hf.get("head_dim")
    return ModelConfig(
        **fields,
        vocab_size=hf.get("vocab_size", 32000),
        hidden_size=hidden,
        num_layers=hf.get("num_hidden_layers", 32),
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=None if head_dim is None or head_dim * heads == hidden else head_dim,
        intermediate_size=hf.get("intermediate_size", 11008),
        max_positions=max_positions,
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=rope_theta(hf),
        attention_bias=hf.get("attention_bias", False),
        mlp_bias=hf.get("mlp_bias", False),
        attention_dropout=hf.get("attention_dropout", 0.0),
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
    )


def config_to_hf(config: ModelConfig) -> dict:
    return {
        **DIALECT.write(config),
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.dim_head,
        "intermediate_size": config.ffn_size,
        "max_position_embeddings": config.max_positions,
        "rms_norm_eps": config.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "rope_theta": config.rope_theta,  # where transformers before v5 reads it
        "attention_bias": config.attention_bias,
        "mlp_bias": config.mlp_bias,
        "attention_dropout": config.attention_dropout,
        "tie_word_embeddings": config.tie_word_embeddings,
    }


def _rules(config: ModelConfig) -> list[Rule]:
    layer = "model.layers.{i}."
    block = "body.stack.blocks.{i}."
    rules = [
        rule("body.embeddings.tokens.weight", "model.embed_tokens.weight"),
        rule("body.stack.final_norm.weight", "model.norm.weight"),
        rule(block + "attn_norm.weight", layer + "input_layernorm.weight", layers="encoder"),
        rule(block + "mlp_norm.weight", layer + "post_attention_layernorm.weight", layers="encoder"),
    ]
    for kind in ("weight", "bias"):  # bias rules match only when attention_bias / mlp_bias
        rules += [
            rule(f"{block}attn.qkv.{kind}", *(f"{layer}self_attn.{p}_proj.{kind}" for p in "qkv"),
                 layers="encoder", split=qkv_sizes),
            rule(f"{block}attn.out.{kind}", f"{layer}self_attn.o_proj.{kind}", layers="encoder"),
            rule(f"{block}mlp.up.{kind}", f"{layer}mlp.gate_proj.{kind}", f"{layer}mlp.up_proj.{kind}",
                 layers="encoder", split=halves),
            rule(f"{block}mlp.down.{kind}", f"{layer}mlp.down_proj.{kind}", layers="encoder"),
        ]
    if config.head == "lm" and not config.tie_word_embeddings:
        rules.append(rule("head.proj.weight", "lm_head.weight"))
    return rules


FAMILY = Family.of(
    DIALECT, config_from_hf, config_to_hf, _rules,
    normalize=lambda state: add_prefix(state, "model.", ("embed_tokens.", "layers.", "norm.")),
    # rotary tables some older files store; a tied (or headless) model's copy of the embeddings
    ignore=(r"rotary_emb\.inv_freq$", r"^lm_head\.weight$"),
)
