"""ModelConfig: presets build, validation names the bad field, JSON round trip."""

from __future__ import annotations

import json

import pytest
import torch

from polyformer.config import HEADS, PRESETS, ModelConfig, preset
from polyformer.errors import ConfigError
from polyformer.heads import HEAD_KINDS
from polyformer.models import PolyformerModel


def test_every_preset_validates():
    for name in PRESETS:
        config = preset(name)
        assert config.hidden_size % config.num_heads == 0 or config.head_dim


def test_preset_sizes_match_reference_models():
    """gpt2 is the 124M model; smollm2-135m is 135M with tied embeddings."""
    gpt2 = sum(p.numel() for p in PolyformerModel(preset("gpt2")).parameters())
    assert abs(gpt2 - 124_439_808) < 1_000
    smol = sum(p.numel() for p in PolyformerModel(preset("smollm2-135m")).parameters())
    assert abs(smol - 134_515_008) < 1_000


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"arch": "transformer"}, "arch"),
        ({"hidden_size": 30, "num_heads": 4}, "hidden_size"),
        ({"num_heads": 8, "num_kv_heads": 3}, "num_kv_heads"),
        ({"activation": "tanh"}, "activation"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": 1.5}, "dropout"),
        ({"head": "mlm", "arch": "decoder"}, "head"),
        ({"norm": "batchnorm"}, "norm"),
    ],
)
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**changes)


def test_json_round_trip_and_file_errors(tmp_path):
    config = preset("llama-tiny", num_labels=3, labels=["a", "b", "c"])
    path = tmp_path / "config.json"
    config.save(path)
    assert ModelConfig.load(path) == config
    data = json.loads(path.read_text())
    data["polyformer"]["hidden_sise"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="hidden_sise") as err:
        ModelConfig.load(path)
    assert str(path) in str(err.value)
    del data["polyformer"]["hidden_sise"]
    data["polyformer"]["num_heads"] = "four"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="num_heads"):
        ModelConfig.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.load(path)


@pytest.mark.parametrize("head", HEADS)
def test_each_head_name_builds_and_outputs_what_its_table_row_says(head):
    """HEAD_KINDS, the one table of head names, covers every name; a model with that head gives those outputs."""
    kind = HEAD_KINDS[head]
    config = preset("bert-tiny", vocab_size=50, head=head, num_labels=3)
    model = PolyformerModel(config).eval()
    ids = torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        out = model(ids, attention_mask=torch.ones_like(ids))
    shapes = {None: None, "tokens": (2, 5, 50 if kind.vocabulary else 3), "pooled": (2, 3), "spans": (2, 5, 2)}
    assert (None if out.logits is None else tuple(out.logits.shape)) == shapes[kind.output]
    assert (out.start_logits is not None) == (kind.output == "spans")
    assert (out.nsp_logits is not None) == kind.nsp
    assert (model.vocab_projection() is not None) == kind.vocabulary
    assert (model.vocab_projection() is None) or model.vocab_projection().weight is model.embeddings.tokens.weight
    assert set(HEAD_KINDS) == set(HEADS)
