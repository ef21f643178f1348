"""The qa recipe: SQuAD loading, the shipped Shakespeare set, overfitting long contexts to EM = 1."""

from __future__ import annotations

import json

import pytest
from task_tiny import FAST, encoder_dir, wordpiece_tokenizer, write_jsonl
from train_tiny import one_thread  # noqa: F401  (fixture)

import polyformer as pf
from polyformer.errors import DataError
from polyformer.tasks.base import TaskOptions
from polyformer.tasks.qa import QA, builtin_path, read_squad
from polyformer.tasks.recipe import FinetuneSpec, evaluate, finetune, predict

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shipped_shakespeare_qa_is_valid_squad(shakespeare_works):
    examples = read_squad(builtin_path())
    assert len(examples) == 70 and len({e.group for e in examples}) == 14
    texts = dict(shakespeare_works)
    for example in examples:
        (answer, start), = example.answers
        assert example.context[start: start + len(answer)] == answer
    works = {"hamlet": "To be, or not to be,--that is the question", "macbeth": "Told by an idiot, full of sound and fury"}
    for work, line in works.items():  # the passages are the catalog's real text
        assert line in texts[work] and any(line in e.context for e in examples)
    splits = [QA.load("shakespeare-qa", split, TaskOptions()) for split in ("train", "dev", "test")]
    assert sum(map(len, splits)) == 70
    assert not {e.group for e in splits[0]} & {e.group for e in splits[2]}  # split by passage


def test_squad_loader_checks_answers(tmp_path):
    document = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "Juliet is the sun.", "qas": [
        {"id": "q1", "question": "Who is the sun?", "answers": [{"text": "Juliet", "answer_start": 0}]},
        {"id": "q2", "question": "What is Juliet?", "answers": [{"text": "the sun", "answer_start": 3}]}]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"question q2: answer 'the sun' is not the context's text at answer_start=3"):
        read_squad(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_squad(path)


def test_span_head_overfits_long_contexts_to_perfect_exact_match(tmp_path):
    filler = " ".join(f"w{i}" for i in range(60))
    rows = [
        {"question": "who is the sun", "context": f"{filler} it is the east and juliet is the sun", "answers": ["juliet"]},
        {"question": "what is the question", "context": f"to be or not to be that is the question {filler}",
         "answers": ["to be or not to be"]},
        {"question": "who is the king", "context": f"{filler} the king is claudius {filler}", "answers": ["claudius"]},
        {"question": "where is the ghost", "context": f"the ghost walks on the walls {filler} of elsinore", "answers": ["on the walls"]},
    ]
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    tokenizer = wordpiece_tokenizer([r["question"] + " " + r["context"] for r in rows])
    spec = FinetuneSpec(task="qa", model=str(encoder_dir(tokenizer, tmp_path / "bert")), data=str(data), dev_data=str(data),
                        out=str(tmp_path / "run"), **{**FAST, "lr": 5e-3}, max_length=48, stride=12, max_steps=100, eval_every=25)
    result = finetune(spec)
    assert result.metrics["eval_exact_match"] == 1.0 and result.metrics["eval_f1"] == 1.0
    model = pf.load(result.model_dir)
    assert model.config.head == "question-answering" and model.config.extra["max_length"] == 48
    scores = evaluate("qa", result.model_dir, str(data), options=TaskOptions(stride=12))
    assert scores.metrics["exact_match"] == 1.0 and scores.metrics["questions"] == 4
    answers = list(predict("qa", result.model_dir, [{"question": r["question"], "context": r["context"]} for r in rows],
                           options=TaskOptions(stride=12)))
    for row, answer in zip(rows, answers):
        assert answer["answer"] == row["answers"][0]
        assert row["context"][answer["start"]: answer["end"]] == answer["answer"]
    with pytest.raises(DataError, match=r"input\[0\]: a question needs a JSON object"):
        list(predict("qa", result.model_dir, ["just a string"]))
