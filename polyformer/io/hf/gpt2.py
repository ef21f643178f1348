"""GPT-2 family (GPT2Model, GPT2LMHeadModel) ↔ polyformer.

GPT-2 is a pre-norm LayerNorm decoder with learned positions. Its projections are `Conv1D`
layers whose weights are stored (in, out), the transpose of `nn.Linear`; `c_attn` already holds
[q; k; v] along its output dimension, exactly our fused `qkv`, so it maps as one tensor.
GPT2Model files carry no `transformer.` prefix and older files hold the causal-mask buffers
`attn.bias` / `attn.masked_bias`; `_normalize` and `ignore` accept both.
"""

from __future__ import annotations

import torch

from polyformer.config import ModelConfig
from polyformer.errors import ConfigError
from polyformer.io.hf.bert import head_from_architectures
from polyformer.io.hf.common import Family, Rule, rule, transpose

ARCHITECTURE_HEADS = {"GPT2Model": "none", "GPT2LMHeadModel": "lm"}
HEAD_ARCHITECTURES = {head: arch for arch, head in ARCHITECTURE_HEADS.items()}
_ACTIVATIONS = {
    "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu",
}
_EXPORT_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}
# options that change the computation in ways polyformer does not model, with the only value it
# accepts (`reorder_and_upcast_attn` only changes precision, so it is accepted either way)
_FIXED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}
# the shape every GPT-2 has; anything else belongs to another family
_LAYOUT = dict(
    arch="decoder", norm="layernorm", norm_placement="pre", final_norm=True, embedding_norm=False,
    position="learned", type_vocab_size=0, scale_embeddings=False, attention_bias=True,
    mlp_bias=True, lm_head_bias=False, pooler=False,
)
_BASE_PREFIXES = ("wte.", "wpe.", "h.", "ln_f.")


def config_from_hf(hf: dict) -> ModelConfig:
    for key, supported in _FIXED.items():
        if hf.get(key, supported) != supported:
            raise ConfigError(f"{key}={hf[key]!r} is not supported for gpt2 models (only {supported!r})")
    act = hf.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ConfigError(f"activation_function={act!r} is not supported; use one of {', '.join(_ACTIVATIONS)}")
    unknown = [arch for arch in hf.get("architectures") or [] if arch not in ARCHITECTURE_HEADS]
    if unknown:
        raise ConfigError(f"architectures={unknown!r} is not supported; gpt2 loads as {', '.join(ARCHITECTURE_HEADS)}")
    return ModelConfig(
        **_LAYOUT,
        vocab_size=hf.get("vocab_size", 50257),
        hidden_size=hf.get("n_embd", 768),
        num_layers=hf.get("n_layer", 12),
        num_heads=hf.get("n_head", 12),
        intermediate_size=hf.get("n_inner"),  # None = 4 * n_embd, as in GPT-2
        max_positions=hf.get("n_positions", 1024),
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation=_ACTIVATIONS[act],
        dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        head=head_from_architectures(hf, ARCHITECTURE_HEADS, "lm"),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        bos_token_id=hf.get("bos_token_id", 50256),
        eos_token_id=hf.get("eos_token_id", 50256),
        pad_token_id=hf.get("pad_token_id"),
    )


def config_to_hf(config: ModelConfig) -> dict:
    wrong = [f"{key}={getattr(config, key)!r}" for key, value in _LAYOUT.items() if getattr(config, key) != value]
    if wrong:
        raise ConfigError(f"not a GPT-2-shaped model: {', '.join(wrong)}")
    if config.activation not in _EXPORT_ACTIVATIONS:
        raise ConfigError(f"activation={config.activation!r} has no GPT-2 equivalent")
    if config.kv_heads != config.num_heads or config.dim_head * config.num_heads != config.hidden_size:
        raise ConfigError("GPT-2 needs num_kv_heads == num_heads and head_dim == hidden_size // num_heads")
    if config.head not in HEAD_ARCHITECTURES:
        raise ConfigError(f"head={config.head!r} has no GPT-2 architecture polyformer exports (none, lm)")
    return {
        "model_type": "gpt2",
        "architectures": [HEAD_ARCHITECTURES[config.head]],
        "vocab_size": config.vocab_size,
        "n_embd": config.hidden_size,
        "n_layer": config.num_layers,
        "n_head": config.num_heads,
        "n_inner": config.intermediate_size,
        "n_positions": config.max_positions,
        "layer_norm_epsilon": config.norm_eps,
        "activation_function": _EXPORT_ACTIVATIONS[config.activation],
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.attention_dropout,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
    }


def _normalize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT2Model files name tensors without the `transformer.` prefix; add it."""
    return {("transformer." + name if name.startswith(_BASE_PREFIXES) else name): t for name, t in state.items()}


def _rules(config: ModelConfig) -> list[Rule]:
    layer = "transformer.h.{i}."
    block = "body.stack.blocks.{i}."
    rules = [
        rule("body.embeddings.tokens.weight", "transformer.wte.weight"),
        rule("body.embeddings.positions.weight", "transformer.wpe.weight"),
        rule("body.stack.final_norm.weight", "transformer.ln_f.weight"),
        rule("body.stack.final_norm.bias", "transformer.ln_f.bias"),
    ]
    conv1d = [("attn.qkv", "attn.c_attn"), ("attn.out", "attn.c_proj"), ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj")]
    for ours, theirs in conv1d:
        rules += [
            rule(f"{block}{ours}.weight", f"{layer}{theirs}.weight", layers="encoder", to_ours=transpose, to_theirs=transpose),
            rule(f"{block}{ours}.bias", f"{layer}{theirs}.bias", layers="encoder"),
        ]
    for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
        rules += [rule(f"{block}{ours}.{kind}", f"{layer}{theirs}.{kind}", layers="encoder") for kind in ("weight", "bias")]
    if config.head == "lm" and not config.tie_word_embeddings:
        rules.append(rule("head.proj.weight", "lm_head.weight"))
    return rules


FAMILY = Family(
    name="gpt2",
    model_types=("gpt2",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    rules=_rules,
    normalize=_normalize,
    # causal-mask buffers of older files; a tied (or headless) model's copy of the embeddings
    ignore=(r"\.attn\.bias$", r"\.attn\.masked_bias$", r"^lm_head\.weight$"),
)
