"""The ner recipe: overfitting a tiny CoNLL set to entity F1 = 1, file formats, entities with offsets."""

from __future__ import annotations

import pytest
from task_tiny import FAST, NER_SENTENCES, encoder_dir, wordpiece_tokenizer, write_conll, write_jsonl
from train_tiny import one_thread  # noqa: F401  (fixture)

import polyformer as pf
from polyformer.errors import DataError
from polyformer.tasks.base import TaskOptions
from polyformer.tasks.ner import NER, entity_spans, read_conll
from polyformer.tasks.recipe import FinetuneSpec, evaluate, finetune, predict

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny BERT fine-tuned on the CoNLL sentences (with the same file as dev set)."""
    root = tmp_path_factory.mktemp("ner")
    tokenizer = wordpiece_tokenizer([" ".join(words) for words, _ in NER_SENTENCES])
    data = write_conll(root / "train.conll")
    spec = FinetuneSpec(task="ner", model=str(encoder_dir(tokenizer, root / "bert")), data=str(data), dev_data=str(data),
                        out=str(root / "run"), **{**FAST, "lr": 5e-3}, max_steps=60, eval_every=20)
    return finetune(spec), data


def test_token_classifier_overfits_to_perfect_entity_f1(trained):
    result, data = trained
    assert result.metrics["eval_f1"] == 1.0
    model = pf.load(result.model_dir)
    assert model.config.head == "token-classification" and not model.config.pooler
    assert model.config.labels[0] == "O" and "B-geo-loc" in model.config.labels
    scores = evaluate("ner", result.model_dir, str(data))
    assert scores.metrics["precision"] == scores.metrics["recall"] == scores.metrics["f1"] == 1.0
    assert set(scores.details["per_type"]) == {"company", "geo-loc", "person"}
    assert scores.details["per_type"]["geo-loc"]["support"] == 4


def test_evaluate_cli_writes_the_per_type_report(trained, tmp_path):
    from cli_runner import run_cli

    result, data = trained
    evaluated = run_cli("evaluate", "--task", "ner", "--model", result.model_dir.parent, "--data", data, "--out", tmp_path / "report")
    assert evaluated.returncode == 0, evaluated.stderr
    report = (tmp_path / "report" / "entities.md").read_text().splitlines()
    assert report[0] == "| type | precision | recall | F1 | support |"
    assert report[2:] == ["| company | 1.000 | 1.000 | 1.000 | 2 |", "| geo-loc | 1.000 | 1.000 | 1.000 | 4 |",
                          "| person | 1.000 | 1.000 | 1.000 | 3 |"]


def test_predict_returns_entities_with_character_offsets(trained):
    result, _ = trained
    text = "Obama visited Paris today"
    (row,) = predict("ner", result.model_dir, [text])
    assert [(e["entity"], e["text"], e["start"], e["end"]) for e in row["entities"]] == [
        ("person", "Obama", 0, 5), ("geo-loc", "Paris", 14, 19)]
    assert all(text[e["start"]: e["end"]] == e["text"] and 0 < e["score"] <= 1 for e in row["entities"])
    (spaced,) = predict("ner", result.model_dir, ["  I love   New York City "])
    assert [(e["text"], e["entity"]) for e in spaced["entities"]] == [("New York City", "geo-loc")]
    (pretokenized,) = predict("ner", result.model_dir, [{"tokens": ["Apple", "hired", "Tim", "Cook"]}])
    assert [e["text"] for e in pretokenized["entities"]] == ["Apple", "Tim Cook"]
    (empty,) = predict("ner", result.model_dir, [""])
    assert empty["entities"] == []


def test_unknown_tag_in_test_data_names_the_sentence(trained, tmp_path):
    result, _ = trained
    test = write_conll(tmp_path / "test.conll", [(["Obama", "spoke"], ["B-person", "O"]), (["a", "Zune"], ["O", "B-gadget"])])
    with pytest.raises(DataError, match=r"test.conll:4: unknown label 'B-gadget'"):
        evaluate("ner", result.model_dir, str(test))


def test_conll_files_with_four_columns_and_docstart(tmp_path):
    path = tmp_path / "conll2003.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
                    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n")
    sentences = read_conll(path)
    assert [(s.words, s.tags) for s in sentences] == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]), (["Peter", "Blackburn"], ["B-PER", "I-PER"])]
    assert sentences[1].where.endswith("conll2003.txt:7")


def test_bad_ner_input_names_the_line(tmp_path):
    bad_tag = tmp_path / "bad.conll"
    bad_tag.write_text("Obama\tPERSON\nspoke\tO\n")
    with pytest.raises(DataError, match=r"bad.conll:1: tag 'PERSON' is not BIO"):
        read_conll(bad_tag)
    one_column = tmp_path / "one.conll"
    one_column.write_text("Obama\tB-person\nspoke\n")
    with pytest.raises(DataError, match=r"one.conll:2: expected 'token ... tag'"):
        read_conll(one_column)
    jsonl = write_jsonl(tmp_path / "ner.jsonl", [{"tokens": ["a", "b"], "tags": ["O", "O"]}, {"tokens": ["a"], "tags": ["O", "O"]}])
    with pytest.raises(DataError, match=r"ner.jsonl:2: need non-empty lists 'tokens' and 'tags' of the same length"):
        NER.load(str(jsonl), "all", TaskOptions())


def test_wnut16_split_and_entity_spans(wnut16_sentences):
    sizes = {split: len(NER.load("wnut16", split, TaskOptions())) for split in ("train", "dev", "test")}
    assert sizes == {"train": 1916, "dev": 239, "test": 239} and sum(sizes.values()) == len(wnut16_sentences)
    assert entity_spans(["B-person", "I-person", "O", "B-geo-loc", "B-geo-loc"]) == [
        ("person", 0, 1), ("geo-loc", 3, 3), ("geo-loc", 4, 4)]
