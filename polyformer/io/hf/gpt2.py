"""GPT-2 family (GPT2Model, GPT2LMHeadModel) ↔ polyformer.

GPT-2 is a pre-norm LayerNorm decoder with learned positions. Its projections are `Conv1D`
layers whose weights are stored (in, out), the transpose of `nn.Linear`; `c_attn` already holds
[q; k; v] along its output dimension, exactly our fused `qkv`, so it maps as one tensor.
GPT2Model files carry no `transformer.` prefix and older files hold the causal-mask buffers
`attn.bias` / `attn.masked_bias`; the added prefix and `ignore` accept both.
"""

from __future__ import annotations

from polyformer.config import ModelConfig
from polyformer.io.hf.common import Family, Rule, rule, transpose
from polyformer.io.hf.dialect import Dialect, add_prefix

DIALECT = Dialect(
    name="gpt2",
    shape="GPT-2",
    architectures={"GPT2Model": "none", "GPT2LMHeadModel": "lm"},
    activation_field="activation_function",
    activations={"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu", "relu": "relu",
                 "silu": "silu", "swish": "silu"},
    export_activations={"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"},
    # the shape every GPT-2 has; anything else belongs to another family
    layout=dict(arch="decoder", norm="layernorm", norm_placement="pre", final_norm=True, embedding_norm=False,
                position="learned", type_vocab_size=0, scale_embeddings=False, attention_bias=True,
                mlp_bias=True, lm_head_bias=False, pooler=False),
    # options that change the computation in ways polyformer does not model, with the only value it
    # accepts (`reorder_and_upcast_attn` only changes precision, so it is accepted either way)
    fixed={"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False},
    default_activation="gelu_new",
    same_head_sizes=True,
    special_tokens={"bos_token_id": 50256, "eos_token_id": 50256, "pad_token_id": None},
)


def config_from_hf(hf: dict) -> ModelConfig:
    return ModelConfig(
        **DIALECT.read(hf),
        vocab_size=hf.get("vocab_size", 50257),
        hidden_size=hf.get("n_embd", 768),
        num_layers=hf.get("n_layer", 12),
        num_heads=hf.get("n_head", 12),
        intermediate_size=hf.get("n_inner"),  # None = 4 * n_embd, as in GPT-2
        max_positions=hf.get("n_positions", 1024),
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
    )


def config_to_hf(config: ModelConfig) -> dict:
    return {
        **DIALECT.write(config),
        "vocab_size": config.vocab_size,
        "n_embd": config.hidden_size,
        "n_layer": config.num_layers,
        "n_head": config.num_heads,
        "n_inner": config.intermediate_size,
        "n_positions": config.max_positions,
        "layer_norm_epsilon": config.norm_eps,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.attention_dropout,
        "tie_word_embeddings": config.tie_word_embeddings,
    }


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


FAMILY = Family.of(
    DIALECT, config_from_hf, config_to_hf, _rules,
    normalize=lambda state: add_prefix(state, "transformer.", ("wte.", "wpe.", "h.", "ln_f.")),
    # causal-mask buffers of older files; a tied (or headless) model's copy of the embeddings
    ignore=(r"\.attn\.bias$", r"\.attn\.masked_bias$", r"^lm_head\.weight$"),
)
