"""Objectives return summed losses and counts that match direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from train_tiny import RandomSource, build_model, one_thread

from polyformer.errors import ConfigError, DataError
from polyformer.training.objectives import (
    CausalLM,
    Classification,
    MaskedLM,
    Seq2SeqLM,
    build_objective,
    model_inputs,
    token_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_seq2seq_label_smoothing_matches_cross_entropy(epsilon):
    model = build_model("seq2seq").eval()
    batch = RandomSource("seq2seq").global_batch(0, 0)
    objective = Seq2SeqLM(label_smoothing=epsilon)
    with torch.no_grad():
        values = objective.compute(model, batch, with_metrics=True)
        logits = model(**model_inputs(batch)).logits
    labels = batch["labels"]
    assert (labels == -100).any()
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), label_smoothing=epsilon, reduction="sum", ignore_index=-100)
    assert torch.allclose(values.sums["lm"], expected, rtol=1e-6)
    # and from first principles: (1-ε)·NLL + ε·mean over the vocabulary of -log p, on kept tokens only
    logp = logits.log_softmax(-1)
    kept = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    manual = ((1 - epsilon) * nll - epsilon * logp.mean(-1))[kept].sum()
    assert torch.allclose(values.sums["lm"], manual, rtol=1e-5)
    assert objective.counts(batch)["lm"] == kept.sum()
    assert values.correct["lm"] == (logits.argmax(-1) == labels)[kept].sum()


def test_causal_lm_sums_labels_as_given():
    model = build_model("causal").eval()
    batch = RandomSource("causal").global_batch(3, 1)
    with torch.no_grad():
        total = CausalLM().sums(model, batch)["lm"]
        logits = model(batch["input_ids"]).logits
    expected = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum")
    assert torch.allclose(total, expected, rtol=1e-6)
    assert CausalLM().counts(batch)["lm"] == (batch["labels"] != -100).sum()


def test_masked_lm_with_nsp_has_two_terms_with_their_own_counts():
    model = build_model("mlm").eval()
    batch = RandomSource("mlm").global_batch(0, 0)
    objective = MaskedLM(nsp=True)
    with torch.no_grad():
        values = objective.compute(model, batch, with_metrics=True)
        out = model(**model_inputs(batch))
    assert objective.terms == ("mlm", "nsp")
    assert torch.allclose(values.sums["mlm"], F.cross_entropy(out.logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum"), rtol=1e-6)
    assert torch.allclose(values.sums["nsp"], F.cross_entropy(out.nsp_logits, batch["next_sentence_label"], reduction="sum"), rtol=1e-6)
    counts = objective.counts(batch)
    assert counts["nsp"] == 4 and counts["mlm"] == (batch["labels"] != -100).sum()
    assert MaskedLM().terms == ("mlm",) and "nsp" not in MaskedLM().sums(model, batch)


def test_classification_and_token_loss_metrics():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, -100])
    loss, correct = token_loss(logits, labels, with_metrics=True)
    assert torch.allclose(loss, F.cross_entropy(logits[:2], labels[:2], reduction="sum"))
    assert correct == 1
    assert Classification().counts({"labels": labels})["cls"] == 2


def test_describe_round_trips_and_errors_are_clear():
    for objective in (CausalLM(), MaskedLM(nsp=True), Seq2SeqLM(0.2), Classification()):
        assert build_objective(objective.describe()) == objective
    with pytest.raises(ConfigError, match="not one of"):
        build_objective({"name": "nope"})
    with pytest.raises(ConfigError, match="label_smoothing"):
        Seq2SeqLM(label_smoothing=1.5)
    with pytest.raises(DataError, match="next_sentence_label"):
        MaskedLM(nsp=True).counts({"input_ids": torch.zeros(1, 2, dtype=torch.long), "labels": torch.zeros(1, 2, dtype=torch.long)})
    batch = RandomSource("mlm").global_batch(0, 0)
    without_nsp_head = {key: batch[key] for key in ("input_ids", "labels", "next_sentence_label")}
    with pytest.raises(ConfigError, match="head='pretraining'"):
        MaskedLM(nsp=True).sums(build_model("causal"), without_nsp_head)
