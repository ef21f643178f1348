"""`pf.pipeline`: every task gives what the model computes, for one input and for a list."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import polyformer as pf
from polyformer.errors import ConfigError
from polyformer.tasks.models import with_head
from task_tiny import SMALL, SENTIMENT, bpe_tokenizer, wordpiece_tokenizer
from train_tiny import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
TEXTS = [text for text, _ in SENTIMENT] + ["Obama visited Paris", "who is the sun", "it is the east and juliet is the sun"]


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer(TEXTS)


def _saved(tmp_path, tokenizer, head: str | None, **settings) -> tuple:
    torch.manual_seed(0)
    model = pf.PolyformerModel(pf.preset("bert-tiny", vocab_size=tokenizer.vocab_size, **SMALL, head="mlm" if head == "mlm" else "none"))
    if head not in (None, "mlm"):
        model = with_head(model, head, **settings)
    folder = tmp_path / (head or "plain")
    pf.save(model.eval(), folder)
    tokenizer.save(folder)
    return folder, model.eval()


def test_text_classification_gives_the_model_probabilities(tmp_path, tokenizer):
    folder, model = _saved(tmp_path, tokenizer, "sequence-classification", labels=["fresh", "rotten"])
    clf = pf.pipeline("sentiment-analysis", str(folder))
    one, many = clf("a gripping thriller"), clf(["a gripping thriller", "dull"])
    assert len(many) == 2 and one["label"] == many[0]["label"]  # a padded batch sums in another order
    assert one["scores"] == pytest.approx(many[0]["scores"], abs=1e-6)
    with torch.no_grad():
        probs = model(**{k: v for k, v in tokenizer(["a gripping thriller"]).items()}).logits.softmax(-1)[0].tolist()
    assert [one["scores"]["fresh"], one["scores"]["rotten"]] == pytest.approx(probs, abs=1e-6)
    assert one["label"] == ["fresh", "rotten"][int(np.argmax(probs))]
    loaded = pf.pipeline("text-classification", pf.load(folder), tokenizer=tokenizer)  # a model object works too
    assert loaded("a gripping thriller")["scores"] == pytest.approx(one["scores"])


def test_pair_models_take_tuples_and_text_pair_dicts(tmp_path, tokenizer):
    folder, _ = _saved(tmp_path, tokenizer, "sequence-classification", labels=["next", "random"], extra={"task": "pair"})
    clf = pf.pipeline("text-classification", str(folder))
    by_tuple = clf(("who is the sun", "juliet"))
    assert by_tuple["text_a"] == "who is the sun" and by_tuple["text_b"] == "juliet"
    assert clf({"text": "who is the sun", "text_pair": "juliet"})["scores"] == pytest.approx(by_tuple["scores"])


def test_token_classification_and_question_answering(tmp_path, tokenizer):
    folder, _ = _saved(tmp_path, tokenizer, "token-classification", labels=["O", "B-person", "I-person"])
    ner = pf.pipeline("ner", str(folder))
    result = ner("Obama visited Paris")
    assert result["text"] == "Obama visited Paris"
    assert all(result["text"][e["start"]: e["end"]] == e["text"] for e in result["entities"])
    assert [r["text"] for r in ner(["Obama visited Paris", "dull"])] == ["Obama visited Paris", "dull"]
    folder, _ = _saved(tmp_path, tokenizer, "question-answering")
    qa = pf.pipeline("question-answering", str(folder))
    context = "it is the east and juliet is the sun"
    answer = qa(question="who is the sun", context=context)
    assert context[answer["start"]: answer["end"]] == answer["answer"] and answer["answer"]
    assert qa([{"question": "who is the sun", "context": context}])[0] == answer


def test_fill_mask_and_embeddings(tmp_path, tokenizer):
    from polyformer.tasks import fill_mask

    folder, model = _saved(tmp_path, tokenizer, "mlm")
    unmasker = pf.pipeline("fill-mask", str(folder), top_k=3)
    result = unmasker("a gripping [MASK]")
    expected = fill_mask(model, tokenizer, "a gripping [MASK]", top_k=3)[0]
    assert [p["token_id"] for p in result["masks"][0]] == [p.token_id for p in expected]
    folder, _ = _saved(tmp_path, tokenizer, None)
    vectors = pf.pipeline("feature-extraction", str(folder))(["a gripping thriller", "dull"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similarity = pf.pipeline("sentence-similarity", str(folder))("a gripping thriller", sentences=["a gripping thriller", "dull"])
    assert similarity[0] == pytest.approx(1.0, abs=1e-5) and similarity[1] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)


def test_zero_shot_classification_ranks_the_candidate_labels(tmp_path):
    from polyformer.tasks.encoding import TaskTokenizer
    from polyformer.tasks.prompting import PromptClassifier, PromptSpec

    tokenizer = bpe_tokenizer(TEXTS + ["Text: Label: positive negative"])
    torch.manual_seed(0)
    model = pf.PolyformerModel(pf.preset("llama-tiny", vocab_size=tokenizer.vocab_size, **{**SMALL, "num_kv_heads": 2})).eval()
    zero_shot = pf.pipeline("zero-shot-classification", model, tokenizer=tokenizer)
    result = zero_shot("a gripping thriller", candidate_labels=["positive", "negative"])
    assert sorted(result["labels"]) == ["negative", "positive"] and result["scores"] == sorted(result["scores"], reverse=True)
    assert sum(result["scores"]) == pytest.approx(1.0)
    direct = PromptClassifier(model, TaskTokenizer(tokenizer, 512), PromptSpec({"positive": "positive", "negative": "negative"}))
    log_probs = direct.scores(["a gripping thriller"])[0].softmax(-1)  # labels in sorted order: negative, positive
    assert dict(zip(result["labels"], result["scores"])) == pytest.approx({"negative": float(log_probs[0]), "positive": float(log_probs[1])})
    calibrated = pf.pipeline("zero-shot-classification", model, tokenizer=tokenizer, calibrate=True)
    result = calibrated("a gripping thriller", candidate_labels=["positive", "negative"])
    expected = direct.calibrated(direct.log_probs(["a gripping thriller"]))[0].softmax(-1)
    assert dict(zip(result["labels"], result["scores"])) == pytest.approx({"negative": float(expected[0]), "positive": float(expected[1])})
    few_shot = pf.pipeline("zero-shot-classification", model, tokenizer=tokenizer, examples=[("a joyful delight", "positive")])
    assert len(few_shot(["dull", "fun"], candidate_labels=["positive", "negative"])) == 2
    with pytest.raises(ConfigError, match="not among candidate_labels"):
        few_shot("dull", candidate_labels=["good", "bad"])


def test_text_generation_is_mapped_by_import_string(tmp_path, monkeypatch):
    import polyformer.pipelines as pipelines

    tokenizer = bpe_tokenizer(TEXTS)
    model = pf.PolyformerModel(pf.preset("llama-tiny", vocab_size=tokenizer.vocab_size, **{**SMALL, "num_kv_heads": 2}))
    try:
        from polyformer.generation.pipeline import TextGenerationPipeline
    except ImportError:
        TextGenerationPipeline = None
    if TextGenerationPipeline is not None:
        generator = pf.pipeline("text-generation", model, tokenizer=tokenizer)
        assert isinstance(generator, TextGenerationPipeline) and generator.model is model
    monkeypatch.setattr(pipelines, "TEXT_GENERATION", "polyformer.generation.not_there:TextGenerationPipeline")
    with pytest.raises(ConfigError, match="text-generation needs polyformer.generation.not_there.TextGenerationPipeline"):
        pf.pipeline("text-generation", model, tokenizer=tokenizer)


def test_pipeline_errors(tmp_path, tokenizer):
    folder, _ = _saved(tmp_path, tokenizer, None)
    with pytest.raises(ConfigError, match="unknown pipeline task 'summarize'"):
        pf.pipeline("summarize", str(folder))
    with pytest.raises(ConfigError, match="fine-tune one first: polyformer finetune --task ner"):
        pf.pipeline("ner", str(folder))
    with pytest.raises(ConfigError, match="tokenizer="):
        pf.pipeline("text-classification", pf.load(folder))
