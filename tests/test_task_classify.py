"""The classify and pair recipes: overfitting tiny sets, splits, label checks and bad input."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from task_tiny import (
    FAST,
    SENTIMENT,
    bpe_tokenizer,
    decoder_dir,
    encoder_dir,
    sentiment_rows,
    seq2seq_dir,
    wordpiece_tokenizer,
    write_csv,
    write_jsonl,
)
from train_tiny import one_thread  # noqa: F401  (fixture)

import polyformer as pf
from polyformer.errors import ConfigError, DataError
from polyformer.tasks import datasets
from polyformer.tasks.recipe import FinetuneSpec, evaluate, finetune, predict

pytestmark = pytest.mark.usefixtures("one_thread")
PAIRS = [("a cat sits on the mat", "a cat is on the mat", 0.9), ("a cat sits on the mat", "stocks fell today", 0.1),
         ("the film was great", "a great movie", 0.8), ("the film was great", "it rained in spain", 0.0),
         ("he plays the piano", "music from a piano", 0.6), ("he plays the piano", "a cat is on the mat", 0.2)]
LINES = [("to be or not to be", "that is the question", "next"), ("to be or not to be", "the king is dead", "random"),
         ("friends romans countrymen", "lend me your ears", "next"), ("friends romans countrymen", "a horse a horse", "random")]


@pytest.fixture(scope="module")
def tokenizer():
    """A small WordPiece vocabulary over every text of this module (fast tiny models)."""
    texts = [text for text, _ in SENTIMENT] + [f"{a} {b}" for a, b, _ in PAIRS + LINES]
    return wordpiece_tokenizer(texts)


@pytest.fixture()
def sentiment_csv(tmp_path):
    return write_csv(tmp_path / "sentiment.csv", sentiment_rows())


def _finetune(tmp_path, model_dir, data, task="classify", **settings):
    spec = FinetuneSpec(task=task, model=str(model_dir), data=str(data), dev_data=str(data), out=str(tmp_path / "run"),
                        **{**FAST, **settings})
    return finetune(spec)


def test_encoder_overfits_to_perfect_accuracy(tmp_path, tokenizer, sentiment_csv):
    result = _finetune(tmp_path, encoder_dir(tokenizer, tmp_path / "bert"), sentiment_csv, max_steps=40, eval_every=10)
    assert result.metrics["eval_accuracy"] == 1.0 and result.metrics["eval_macro_f1"] == 1.0
    model = pf.load(result.model_dir)  # the run ends with a loadable model, labels in its config
    assert model.config.head == "sequence-classification"
    assert model.config.labels == ["fresh", "rotten"]
    assert model.config.extra["task"] == "classify"
    assert (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").is_file()
    scores = evaluate("classify", result.model_dir, str(sentiment_csv))
    assert scores.metrics["accuracy"] == 1.0 and scores.details["confusion_matrix"] == [[4, 0], [0, 4]]
    rows = list(predict("classify", result.model_dir, [text for text, _ in SENTIMENT]))
    assert [row["label"] for row in rows] == [label for _, label in SENTIMENT]
    assert all(abs(sum(row["scores"].values()) - 1) < 1e-5 and row["score"] == max(row["scores"].values()) for row in rows)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_decoder_classifier_overfits_with_last_token_or_mean_pooling(tmp_path, sentiment_csv, pooling):
    tokenizer = bpe_tokenizer([text for text, _ in SENTIMENT])
    result = _finetune(tmp_path, decoder_dir(tokenizer, tmp_path / "llama"), sentiment_csv, max_steps=60, eval_every=20,
                       pooling=pooling)
    assert result.metrics["eval_accuracy"] == 1.0
    model = pf.load(result.model_dir)
    assert model.config.arch == "decoder" and model.config.classifier_pooling == pooling


def test_encoder_decoder_classifier_overfits(tmp_path, tokenizer, sentiment_csv):
    result = _finetune(tmp_path, seq2seq_dir(tokenizer, tmp_path / "marian"), sentiment_csv, max_steps=60, eval_every=20)
    assert result.metrics["eval_accuracy"] == 1.0
    assert pf.load(result.model_dir).config.arch == "encoder-decoder"


def test_pair_regression_overfits_to_perfect_spearman(tmp_path, tokenizer):
    pairs = PAIRS
    data = write_jsonl(tmp_path / "sts.jsonl", [{"text_a": a, "text_b": b, "score": s} for a, b, s in pairs])
    result = _finetune(tmp_path, encoder_dir(tokenizer, tmp_path / "bert"), data, task="pair", max_steps=80, eval_every=20)
    assert result.metrics["eval_spearman"] == pytest.approx(1.0)
    model = pf.load(result.model_dir)
    assert model.config.num_labels == 1 and model.config.extra["problem_type"] == "regression"
    rows = list(predict("pair", result.model_dir, [{"text_a": a, "text_b": b} for a, b, _ in pairs]))
    assert [row["text_b"] for row in rows] == [b for _, b, _ in pairs] and all("score" in row for row in rows)


def test_pair_classification_uses_token_types(tmp_path, tokenizer):
    rows = [{"text_a": a, "text_b": b, "label": label} for a, b, label in LINES]
    data = write_csv(tmp_path / "pairs.csv", rows)
    result = _finetune(tmp_path, encoder_dir(tokenizer, tmp_path / "bert"), data, task="pair", max_steps=40, eval_every=10)
    assert result.metrics["eval_accuracy"] == 1.0
    from polyformer.tasks.encoding import TaskTokenizer

    encoded = TaskTokenizer(tokenizer, 32).encode(["to be"], ["or not"])[0]
    assert encoded.type_ids == [0, 0, 0, 0, 1, 1, 1] and encoded.sequence_ids == [None, 0, 0, None, 1, 1, None]
    assert encoded.ids[0] == tokenizer.cls_token_id and encoded.ids[3] == encoded.ids[6] == tokenizer.sep_token_id


# ---- data: splits and bad input --------------------------------------------------------------------
def test_rotten_tomatoes_split_is_deterministic_stratified_and_disjoint(rotten_tomatoes_rows):
    from polyformer.tasks.classify import rotten_tomatoes

    splits = {name: rotten_tomatoes(name) for name in ("train", "dev", "test")}
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 10248, "dev": 1280, "test": 1280}
    assert sum(len(rows) for rows in splits.values()) == len(rotten_tomatoes_rows)
    places = [set(e.where for e in rows) for rows in splits.values()]
    assert not (places[0] & places[1]) and not (places[0] & places[2]) and not (places[1] & places[2])
    share = {name: Counter(e.label for e in rows)["fresh"] / len(rows) for name, rows in splits.items()}
    assert max(share.values()) - min(share.values()) < 0.002  # every split keeps the 57.8% fresh share
    assert [e.where for e in rotten_tomatoes("test")] == [e.where for e in splits["test"]]


def test_unknown_label_in_test_data_names_the_line(tmp_path, tokenizer, sentiment_csv):
    result = _finetune(tmp_path, encoder_dir(tokenizer, tmp_path / "bert"), sentiment_csv, max_steps=2)
    test = write_jsonl(tmp_path / "test.jsonl", [{"text": "fine", "label": "fresh"}, {"text": "meh", "label": "mixed"}])
    with pytest.raises(DataError, match=r"test.jsonl:2: unknown label 'mixed'.*'fresh', 'rotten'"):
        evaluate("classify", result.model_dir, str(test))


def test_malformed_lines_name_the_line(tmp_path):
    from polyformer.tasks.base import TaskOptions
    from polyformer.tasks.classify import CLASSIFY

    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok", "label": "a"}\n{"text": "broken", "label": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        CLASSIFY.load(str(bad_json), "all", TaskOptions())
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text('text,label\n"fine",fresh\nnot, quoted, enough,fresh\nshort\n')
    with pytest.raises(DataError, match=r"bad.csv:3: malformed csv row: 4 cells where the header has 2"):
        CLASSIFY.load(str(bad_csv), "all", TaskOptions())
    short = tmp_path / "short.csv"
    short.write_text("text,label\nalone\n")
    with pytest.raises(DataError, match=r"short.csv:2: malformed csv row: 1 cells"):
        CLASSIFY.load(str(short), "all", TaskOptions())
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": "fine", "label": "a"}, {"text": "  ", "label": "b"}])
    with pytest.raises(DataError, match=r"empty.jsonl:2: field 'text' is empty"):
        CLASSIFY.load(str(empty), "all", TaskOptions())
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"text": "no label here"}])
    with pytest.raises(DataError, match=r"missing.jsonl:1: missing label field 'label'"):
        CLASSIFY.load(str(missing), "all", TaskOptions())


def test_empty_and_too_long_texts_at_prediction(tmp_path, tokenizer, sentiment_csv, caplog):
    result = _finetune(tmp_path, encoder_dir(tokenizer, tmp_path / "bert"), sentiment_csv, max_steps=2)
    long_text = "a gripping thriller " * 400
    rows = list(predict("classify", result.model_dir, ["", long_text, "short"]))
    assert [row["truncated"] for row in rows] == [False, True, False]
    assert rows[0]["label"] in ("fresh", "rotten")  # an empty text still gets an answer
    long_test = write_jsonl(tmp_path / "long.jsonl", [{"text": long_text, "label": "fresh"}, {"text": "ok", "label": "rotten"}])
    with caplog.at_level("WARNING", logger="polyformer.tasks"):
        scores = evaluate("classify", result.model_dir, str(long_test))
    assert scores.metrics["truncated"] == 1
    assert "1 of 2 texts were longer than max_length=128 tokens and were truncated" in caplog.text


def test_model_without_the_head_suggests_finetune(tmp_path, tokenizer, sentiment_csv):
    plain = encoder_dir(tokenizer, tmp_path / "bert")
    with pytest.raises(ConfigError, match=r"head='none', not a sequence-classification head; fine-tune one first: "
                                          r"polyformer finetune --task classify"):
        evaluate("classify", plain, str(sentiment_csv))
    decoder = decoder_dir(bpe_tokenizer(["some text here"]), tmp_path / "llama")
    with pytest.raises(ConfigError, match=r"--prompt"):
        list(predict("classify", decoder, ["x"]))


def test_classification_with_fresh_head_keeps_the_body(tokenizer):
    from polyformer.tasks.models import with_head

    torch.manual_seed(0)
    base = pf.PolyformerModel(pf.preset("bert-tiny", vocab_size=tokenizer.vocab_size, head="pretraining", **{
        "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64})).eval()
    ids = tokenizer(["to be or not"])["input_ids"]
    for head in ("sequence-classification", "token-classification", "question-answering"):
        model = with_head(base, head, labels=["a", "b", "c"]).eval()
        assert torch.equal(model(ids).last_hidden_state, base(ids).last_hidden_state)
        assert model.config.pooler == (head == "sequence-classification")  # BERT's pooler only for sequences
    assert datasets.split_indices(10)["test"] == datasets.split_indices(10)["test"]  # seeded
    assert json.dumps(with_head(base, "sequence-classification", labels=["x", "y"]).config.labels) == '["x", "y"]'
