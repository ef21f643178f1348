"""Zero-/few-shot classification by prompting: cached-prefix scores equal the whole prompt's."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from task_tiny import (
    SENTIMENT,
    bpe_tokenizer,
    decoder_dir,
    encoder_dir,
    sentiment_rows,
    wordpiece_tokenizer,
    write_jsonl,
)
from train_tiny import one_thread  # noqa: F401  (fixture)

import polyformer as pf
from polyformer.errors import ConfigError
from polyformer.tasks.base import TaskOptions
from polyformer.tasks.classify import TextExample
from polyformer.tasks.encoding import TaskTokenizer
from polyformer.tasks.prompting import (
    PromptClassifier,
    PromptSettings,
    PromptSpec,
    choose_shots,
    evaluate_prompted,
    prompt_spec,
)

pytestmark = pytest.mark.usefixtures("one_thread")
SHOTS = [TextExample(text, label=label, where=f"shot{i}") for i, (text, label) in enumerate(SENTIMENT[::3])]


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    texts = [text for text, _ in SENTIMENT] + ["Review: Sentiment: positive negative very good bad"]
    tokenizer = bpe_tokenizer(texts)
    folder = decoder_dir(tokenizer, tmp_path_factory.mktemp("llama") / "model")
    return pf.load(folder), tokenizer, folder


def _whole_prompt_scores(model, tokenizer, spec: PromptSpec, text: str) -> list[float]:
    """Each label's continuation log-probability, computed on the whole prompt without any cache."""
    context = tokenizer.encode(spec.prefix() + spec.query(text), add_special_tokens=False)
    scores = []
    for label in spec.labels:
        continuation = tokenizer.encode(" " + spec.verbalizers[label], add_special_tokens=False)
        ids = torch.tensor([context + continuation])
        with torch.no_grad():
            log_probs = model(ids).logits[0].log_softmax(-1)
        scores.append(sum(float(log_probs[len(context) - 1 + i, token]) for i, token in enumerate(continuation)))
    return scores


@pytest.mark.parametrize("verbalizers", [{"fresh": "good", "rotten": "bad"},
                                         {"fresh": "very good indeed", "rotten": "bad"}])
@pytest.mark.parametrize("shots", [0, 3])
def test_cached_prefix_scores_equal_the_whole_prompt(decoder, verbalizers, shots):
    model, tokenizer, _ = decoder
    spec = PromptSpec(verbalizers, template="Review: {text}\nSentiment:", instruction="Label each review." if shots else "",
                      shots=SHOTS[:shots])
    classifier = PromptClassifier(model, TaskTokenizer(tokenizer, 256), spec)
    texts = ["a gripping thriller", "dull", "the worst script in years and a boring mess"]
    scores = classifier.scores(texts, batch_size=2)  # batches of different lengths, right-padded after the prefix
    for text, row in zip(texts, scores):
        assert row.tolist() == pytest.approx(_whole_prompt_scores(model, tokenizer, spec, text), abs=1e-4)


def test_shots_are_balanced_seeded_and_never_scored(decoder, tmp_path):
    examples = [TextExample(f"text {i}", label="a" if i % 4 else "b", where=str(i)) for i in range(40)]
    shots = choose_shots(examples, 8, seed=1)
    assert Counter(s.label for s in shots) == {"a": 4, "b": 4}
    assert [s.where for s in shots] == [s.where for s in choose_shots(examples, 8, seed=1)]
    assert [s.where for s in shots] != [s.where for s in choose_shots(examples, 8, seed=2)]
    model, tokenizer, folder = decoder
    data = write_jsonl(tmp_path / "reviews.jsonl", sentiment_rows() * 3)
    result = evaluate_prompted(str(folder), str(data), "all", TaskOptions(),
                               PromptSettings(shots=4, verbalizers={"fresh": "good", "rotten": "bad"}))
    assert result.metrics["shots"] == 4 and result.metrics["examples"] == 24 - 4
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and sum(map(sum, result.details["confusion_matrix"])) == 20
    assert result.details["prompt_prefix"].count("Sentiment:") == 0 and result.details["prompt_prefix"].count("Label:") == 4


def test_prompt_spec_defaults_and_errors(tmp_path):
    train = [TextExample("x", label="fresh"), TextExample("y", label="rotten")]
    spec = prompt_spec("rotten_tomatoes", train)
    assert spec.verbalizers == {"fresh": "positive", "rotten": "negative"} and "{text}" in spec.template
    assert prompt_spec("other.csv", train).verbalizers == {"fresh": "fresh", "rotten": "rotten"}
    with pytest.raises(ConfigError, match="names label"):
        prompt_spec("x", train, PromptSettings(verbalizers={"mixed": "so-so"}))
    with pytest.raises(ConfigError, match="no {text} placeholder"):
        PromptSpec({"a": "a", "b": "b"}, template="no placeholder")
    tokenizer = wordpiece_tokenizer(["an encoder"])
    encoder = pf.load(encoder_dir(tokenizer, tmp_path / "bert"))
    with pytest.raises(ConfigError, match="prompting needs a decoder with an LM head"):
        PromptClassifier(encoder, TaskTokenizer(tokenizer, 64), spec)


def test_contextual_calibration_divides_out_the_content_free_prior(decoder):
    from polyformer.tasks.prompting import CONTENT_FREE

    model, tokenizer, _ = decoder
    spec = PromptSpec({"fresh": "good", "rotten": "bad"}, shots=SHOTS[:2])
    classifier = PromptClassifier(model, TaskTokenizer(tokenizer, 256), spec)
    prior = torch.tensor([_whole_prompt_scores(model, tokenizer, spec, text) for text in CONTENT_FREE]).softmax(-1).mean(0)
    assert classifier.label_prior().tolist() == pytest.approx(prior.tolist(), abs=1e-5)
    texts = [text for text, _ in SENTIMENT]
    raw = classifier.log_probs(texts)
    expected = raw.log_softmax(-1) - prior.log()
    torch.testing.assert_close(classifier.calibrated(raw), expected, atol=1e-5, rtol=0)
    examples = [TextExample(text, label=label, where=str(i)) for i, (text, label) in enumerate(SENTIMENT)]
    result = classifier.evaluate(examples)
    gold = [0 if label == "fresh" else 1 for _, label in SENTIMENT]
    assert result.metrics["accuracy"] == pytest.approx(sum(int(p == g) for p, g in zip(raw.argmax(-1).tolist(), gold)) / 8)
    assert result.metrics["calibrated_accuracy"] == pytest.approx(
        sum(int(p == g) for p, g in zip(expected.argmax(-1).tolist(), gold)) / 8)
    spec.calibrate = True
    assert classifier.scores(texts).argmax(-1).tolist() == expected.argmax(-1).tolist()
    assert classifier.evaluate(examples).metrics["uncalibrated_accuracy"] == result.metrics["accuracy"]
