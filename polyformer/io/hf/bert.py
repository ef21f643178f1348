"""BERT family (BertModel, BertForPreTraining, BertForMaskedLM, BertForSequenceClassification,
BertForTokenClassification, BertForQuestionAnswering) ↔ polyformer.

Old checkpoints name LayerNorm parameters gamma/beta and base-model files drop the `bert.`
prefix; `_normalize` accepts both.
"""

from __future__ import annotations

import torch

from polyformer.config import ModelConfig
from polyformer.errors import ConfigError
from polyformer.io.hf.common import Family, Rule, qkv_sizes, rule
from polyformer.io.hf.dialect import Dialect

DIALECT = Dialect(
    name="bert",
    shape="BERT",
    architectures={
        "BertModel": "none",
        "BertForPreTraining": "pretraining",
        "BertForMaskedLM": "mlm",
        "BertForSequenceClassification": "sequence-classification",
        "BertForTokenClassification": "token-classification",
        "BertForQuestionAnswering": "question-answering",
    },
    activation_field="hidden_act",
    activations={"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu",
                 "gelu_pytorch_tanh": "gelu_new"},
    export_activations={"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu", "silu": "silu"},
    layout=dict(arch="encoder", norm="layernorm", norm_placement="post", position="learned"),
    default_head="none",
    unknown_architectures=True,  # other BERT task models load as the bare encoder
)
# heads without BERT's pooler in transformers
_NO_POOLER = ("mlm", "token-classification", "question-answering")


def _require(hf: dict, key: str):
    if key not in hf:
        raise ConfigError(f"missing field {key!r} for a bert model")
    return hf[key]


def labels_from_hf(hf: dict) -> tuple[int, list[str] | None]:
    """num_labels and label names from id2label (string or int keys), if present."""
    id2label = hf.get("id2label")
    if not id2label:
        return int(hf.get("num_labels", 2)), None
    ordered = [id2label[key] for key in sorted(id2label, key=lambda k: int(k))]
    return len(ordered), ordered


def labels_to_hf(config: ModelConfig) -> dict:
    names = config.labels or [f"LABEL_{i}" for i in range(config.num_labels)]
    return {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)}}


def config_from_hf(hf: dict) -> ModelConfig:
    fields = DIALECT.read(hf)
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"position_embedding_type={hf['position_embedding_type']!r} is not supported (only 'absolute')")
    num_labels, labels = labels_from_hf(hf)
    return ModelConfig(
        **fields,
        vocab_size=_require(hf, "vocab_size"),
        hidden_size=_require(hf, "hidden_size"),
        num_layers=_require(hf, "num_hidden_layers"),
        num_heads=_require(hf, "num_attention_heads"),
        intermediate_size=_require(hf, "intermediate_size"),
        max_positions=_require(hf, "max_position_embeddings"),
        norm_eps=hf.get("layer_norm_eps", 1e-12), final_norm=False, embedding_norm=True,
        type_vocab_size=hf.get("type_vocab_size", 2),
        dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pooler=fields["head"] not in _NO_POOLER,
        num_labels=num_labels, labels=labels,
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        pad_token_id=hf.get("pad_token_id", 0),
    )


def config_to_hf(config: ModelConfig) -> dict:
    out = {
        **DIALECT.write(config),
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.ffn_size,
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_positions,
        "type_vocab_size": max(config.type_vocab_size, 1),
        "layer_norm_eps": config.norm_eps,
        "pad_token_id": config.pad_token_id if config.pad_token_id is not None else 0,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": config.tie_word_embeddings,
    }
    if config.head in ("sequence-classification", "token-classification"):
        out.update(labels_to_hf(config))
    return out


def _normalize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept LayerNorm gamma/beta and base-model files without the `bert.` prefix."""
    out = {}
    for name, tensor in state.items():
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if name.startswith(("embeddings.", "encoder.", "pooler.")):
            name = "bert." + name
        out[name] = tensor
    return out


def _rules(config: ModelConfig) -> list[Rule]:
    layer = "bert.encoder.layer.{i}."
    block = "body.stack.blocks.{i}."
    rules = [
        rule("body.embeddings.tokens.weight", "bert.embeddings.word_embeddings.weight"),
        rule("body.embeddings.positions.weight", "bert.embeddings.position_embeddings.weight"),
        rule("body.embeddings.token_types.weight", "bert.embeddings.token_type_embeddings.weight"),
        rule("body.embeddings.norm.weight", "bert.embeddings.LayerNorm.weight"),
        rule("body.embeddings.norm.bias", "bert.embeddings.LayerNorm.bias"),
    ]
    for kind in ("weight", "bias"):
        rules += [
            rule(block + f"attn.qkv.{kind}", *(layer + f"attention.self.{p}.{kind}" for p in ("query", "key", "value")),
                 layers="encoder", split=qkv_sizes),
            rule(block + f"attn.out.{kind}", layer + f"attention.output.dense.{kind}", layers="encoder"),
            rule(block + f"attn_norm.{kind}", layer + f"attention.output.LayerNorm.{kind}", layers="encoder"),
            rule(block + f"mlp.up.{kind}", layer + f"intermediate.dense.{kind}", layers="encoder"),
            rule(block + f"mlp.down.{kind}", layer + f"output.dense.{kind}", layers="encoder"),
            rule(block + f"mlp_norm.{kind}", layer + f"output.LayerNorm.{kind}", layers="encoder"),
        ]
        if config.pooler:
            rules.append(rule(f"pooler.dense.{kind}", f"bert.pooler.dense.{kind}"))
    rules += _head_rules(config)
    return rules


def _head_rules(config: ModelConfig) -> list[Rule]:
    rules: list[Rule] = []
    if config.head in ("mlm", "pretraining"):
        rules += [
            rule("head.dense.weight", "cls.predictions.transform.dense.weight"),
            rule("head.dense.bias", "cls.predictions.transform.dense.bias"),
            rule("head.norm.weight", "cls.predictions.transform.LayerNorm.weight"),
            rule("head.norm.bias", "cls.predictions.transform.LayerNorm.bias"),
            rule("head.proj.weight", "cls.predictions.decoder.weight"),
            rule("head.proj.bias", "cls.predictions.bias"),
        ]
    if config.head == "pretraining":
        rules += [rule("nsp.proj.weight", "cls.seq_relationship.weight"), rule("nsp.proj.bias", "cls.seq_relationship.bias")]
    names = {"sequence-classification": "classifier", "token-classification": "classifier", "question-answering": "qa_outputs"}
    if config.head in names:
        rules += [rule(f"head.proj.{k}", f"{names[config.head]}.{k}") for k in ("weight", "bias")]
    return rules


def _tied(config: ModelConfig) -> list[str]:
    return ["cls.predictions.decoder.weight"] if config.tie_word_embeddings else []


FAMILY = Family.of(
    DIALECT, config_from_hf, config_to_hf, _rules,
    normalize=_normalize,
    ignore=(r"position_ids$", r"cls\.predictions\.decoder\.bias$"),
    tied=_tied,
)
