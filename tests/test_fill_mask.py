"""Fill-mask against transformers' BertForMaskedLM on the same random weights."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import polyformer as pf
from polyformer.errors import ConfigError, DataError
from polyformer.tasks import fill_mask


def test_fill_mask_matches_transformers_top_k(minilm_dir, tmp_path):
    torch.manual_seed(0)
    tokenizer = pf.load_tokenizer(minilm_dir)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64)
    reference = transformers.BertForMaskedLM(config).eval()
    reference.save_pretrained(tmp_path / "mlm")
    model = pf.load(tmp_path / "mlm")
    text = "the movie was [MASK] and the acting was [MASK] ."
    predictions = fill_mask(model, tokenizer, text, top_k=3)
    assert len(predictions) == 2
    ids = tokenizer([text])["input_ids"]
    with torch.no_grad():
        logits = reference(ids).logits[0]
    positions = (ids[0] == tokenizer.mask_token_id).nonzero().flatten()
    for row, position in zip(predictions, positions):
        expected = logits[position].softmax(-1).topk(3)
        assert [p.token_id for p in row] == expected.indices.tolist()
        assert [p.score for p in row] == pytest.approx(expected.values.tolist(), abs=1e-5)


def test_fill_mask_errors(minilm_dir):
    tokenizer = pf.load_tokenizer(minilm_dir)
    mlm = pf.PolyformerModel(pf.preset("bert-tiny", vocab_size=tokenizer.vocab_size, head="mlm"))
    with pytest.raises(DataError, match="no mask token"):
        fill_mask(mlm, tokenizer, "nothing to fill")
    plain = pf.PolyformerModel(pf.preset("bert-tiny", vocab_size=tokenizer.vocab_size))
    with pytest.raises(ConfigError, match="masked-LM head"):
        fill_mask(plain, tokenizer, "a [MASK] here")
