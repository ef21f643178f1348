"""Fine-tuned classifier / token-classifier / QA models export to HF layout with transformers' outputs."""

from __future__ import annotations

import pytest
import torch
from task_tiny import (
    FAST,
    NER_SENTENCES,
    SENTIMENT,
    sentiment_rows,
    wordpiece_tokenizer,
    write_conll,
    write_csv,
    write_jsonl,
)
from train_tiny import one_thread  # noqa: F401  (fixture)

import polyformer as pf
from polyformer.tasks.recipe import FinetuneSpec, finetune

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")
QA_ROWS = [{"question": "who is the sun", "context": "it is the east and juliet is the sun", "answers": ["juliet"]},
           {"question": "what is the question", "context": "to be or not to be that is the question", "answers": ["to be"]}]
HEADS = {
    "classify": ("AutoModelForSequenceClassification", lambda d: write_csv(d / "data.csv", sentiment_rows())),
    "ner": ("AutoModelForTokenClassification", lambda d: write_conll(d / "data.conll")),
    "qa": ("AutoModelForQuestionAnswering", lambda d: write_jsonl(d / "data.jsonl", QA_ROWS)),
}


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
    """A random transformers BertModel folder with its WordPiece tokenizer: a checkpoint to start from."""
    texts = [t for t, _ in SENTIMENT] + [" ".join(w) for w, _ in NER_SENTENCES] + [r["question"] + " " + r["context"] for r in QA_ROWS]
    tokenizer = wordpiece_tokenizer(texts)
    folder = tmp_path_factory.mktemp("hf") / "bert"
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=48, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save(folder)
    return folder, tokenizer


@pytest.mark.parametrize("task", list(HEADS))
def test_fine_tuned_model_exports_to_transformers_with_the_same_outputs(hf_bert, tmp_path, task):
    folder, tokenizer = hf_bert
    auto_class, write_data = HEADS[task]
    data = write_data(tmp_path)
    result = finetune(FinetuneSpec(task=task, model=str(folder), data=str(data), dev_data=str(data), out=str(tmp_path / "run"),
                                   **FAST, max_steps=4, eval_every=2, max_length=48))
    model = pf.load(result.model_dir).eval()
    pf.save(model, tmp_path / "hf", format="hf")
    theirs = getattr(transformers, auto_class).from_pretrained(tmp_path / "hf").eval()
    batch = tokenizer(["a gripping thriller", "who is the sun"], ["it is the east", "juliet"])  # pairs: token types 0 / 1
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        ours, reference = model(**inputs), theirs(**inputs)
    if task == "qa":
        torch.testing.assert_close(ours.start_logits, reference.start_logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.end_logits, reference.end_logits, atol=1e-5, rtol=1e-4)
    else:
        mask = inputs["attention_mask"].bool() if task == "ner" else torch.ones(2, dtype=torch.bool)
        torch.testing.assert_close(ours.logits[mask], reference.logits[mask], atol=1e-5, rtol=1e-4)
        assert [theirs.config.id2label[i] for i in range(len(model.config.labels))] == model.config.labels
    assert not torch.equal(ours.last_hidden_state, pf.load(folder)(**inputs).last_hidden_state)  # it was trained
