"""BERT parity: random-init transformers models load into polyformer with identical outputs."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import polyformer as pf

CLASSES = [
    "BertModel",
    "BertForPreTraining",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertForQuestionAnswering",
]
SHAPES = [
    dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48),
    dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=3, intermediate_size=40, hidden_act="relu", tie_word_embeddings=False),
]


def padded_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(5, vocab, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return ids, mask, types


def hf_bert(cls_name: str, shape: dict, tmp_path):
    torch.manual_seed(0)
    num_labels = 2 if cls_name == "BertForQuestionAnswering" else 3  # QA has exactly start/end
    config = transformers.BertConfig(vocab_size=99, max_position_embeddings=64, num_labels=num_labels, **shape)
    model = getattr(transformers, cls_name)(config).eval()
    model.save_pretrained(tmp_path / "hf")
    return model


def compare(ref, ours, cls_name: str, mask: torch.Tensor) -> None:
    live = mask.bool()
    if cls_name == "BertModel":
        diff = (ref.last_hidden_state - ours.last_hidden_state)[live].abs().max()
        assert diff <= 1e-4
        assert (ref.pooler_output - ours.pooler_output).abs().max() <= 1e-4
    elif cls_name == "BertForPreTraining":
        assert (ref.prediction_logits - ours.logits)[live].abs().max() <= 1e-4
        assert (ref.seq_relationship_logits - ours.nsp_logits).abs().max() <= 1e-4
    elif cls_name == "BertForQuestionAnswering":
        assert (ref.start_logits - ours.start_logits)[live].abs().max() <= 1e-4
        assert (ref.end_logits - ours.end_logits)[live].abs().max() <= 1e-4
    elif cls_name == "BertForSequenceClassification":
        assert (ref.logits - ours.logits).abs().max() <= 1e-4
    else:
        assert (ref.logits - ours.logits)[live].abs().max() <= 1e-4


@pytest.mark.parametrize("shape", SHAPES, ids=["gelu-tied", "relu-untied-odd"])
@pytest.mark.parametrize("cls_name", CLASSES)
def test_bert_import_parity(cls_name, shape, tmp_path):
    ref_model = hf_bert(cls_name, shape, tmp_path)
    ids, mask, types = padded_batch(99)
    model = pf.load(tmp_path / "hf")
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        ours = model(ids, attention_mask=mask, token_type_ids=types)
    compare(ref, ours, cls_name, mask)


@pytest.mark.parametrize("cls_name", CLASSES)
def test_bert_export_round_trip(cls_name, tmp_path):
    ref_model = hf_bert(cls_name, SHAPES[0], tmp_path)
    model = pf.load(tmp_path / "hf")
    pf.save(model, tmp_path / "out", format="hf")
    reloaded = getattr(transformers, cls_name).from_pretrained(tmp_path / "out").eval()
    ids, mask, types = padded_batch(99)
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        again = reloaded(input_ids=ids, attention_mask=mask, token_type_ids=types)
        ours = model(ids, attention_mask=mask, token_type_ids=types)
    compare(again, ours, cls_name, mask)
    compare(ref, ours, cls_name, mask)


def test_old_names_and_missing_prefix(tmp_path):
    """gamma/beta LayerNorm names and a base-model file without the `bert.` prefix still load."""
    from safetensors.torch import load_file, save_file

    ref_model = hf_bert("BertModel", SHAPES[0], tmp_path)
    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(path)
    renamed = {k.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma")
               .replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in state.items()}
    save_file(renamed, path)
    model = pf.load(tmp_path / "hf")
    ids, mask, types = padded_batch(99)
    with torch.no_grad():
        compare(ref_model(input_ids=ids, attention_mask=mask, token_type_ids=types), model(ids, mask, types), "BertModel", mask)
