"""`evaluate` / `predict` without `--task`: the task is read from the model's head and fine-tuning record."""

from __future__ import annotations

import json

import pytest

import polyformer as pf
from cli_runner import assert_one_line_error, run_cli
from polyformer.errors import ConfigError
from polyformer.tasks.inference import infer_task, task_for
from polyformer.tasks.recipe import FinetuneSpec, finetune
from task_tiny import (FAST, NER_SENTENCES, SENTIMENT, bpe_tokenizer, decoder_dir, encoder_dir, seq2seq_dir,
                       sentiment_rows, wordpiece_tokenizer, write_jsonl)
from train_tiny import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
QA_ROWS = [{"question": "who is the sun", "context": "it is the east and juliet is the sun", "answers": ["juliet"]},
           {"question": "what is the question", "context": "to be or not to be that is the question", "answers": ["to be"]}]
PAIR_ROWS = [{"text_a": a, "text_b": b, "label": label}
             for (a, label), (b, _) in zip(SENTIMENT, SENTIMENT[1:] + SENTIMENT[:1])]
DATA = {
    "classify": lambda root: write_jsonl(root / "classify.jsonl", sentiment_rows()),
    "pair": lambda root: write_jsonl(root / "pair.jsonl", PAIR_ROWS),
    "ner": lambda root: write_jsonl(root / "ner.jsonl", [{"tokens": w, "tags": t} for w, t in NER_SENTENCES]),
    "qa": lambda root: write_jsonl(root / "qa.jsonl", QA_ROWS),
}


def config(head: str, arch: str = "encoder", **extra) -> pf.ModelConfig:
    name = {"encoder": "bert-tiny", "decoder": "llama-tiny", "encoder-decoder": "transformer-small"}[arch]
    return pf.preset(name, head=head, extra=extra)


@pytest.mark.parametrize("head, extra, task", [
    ("sequence-classification", {}, "classify"),
    ("sequence-classification", {"task": "classify"}, "classify"),
    ("sequence-classification", {"task": "pair"}, "pair"),
    ("token-classification", {"task": "ner"}, "ner"),
    ("question-answering", {}, "qa"),
    ("mlm", {}, "fill-mask"),
    ("pretraining", {}, "fill-mask"),
])
def test_each_head_names_its_task(head, extra, task):
    assert infer_task(config(head, **extra), "m") == task
    if task != "fill-mask":
        assert infer_task(config(head, **extra), "m", verb="evaluate") == task


def test_heads_that_fit_several_tasks_ask_for_one_listing_the_choices():
    with pytest.raises(ConfigError) as decoder:
        infer_task(config("lm", "decoder"), "runs/gpt")
    message = str(decoder.value)
    assert "\n" not in message and message.startswith("runs/gpt: a decoder with an LM head fits more than one task")
    for choice in ("--task classify --prompt", "polyformer generate --model runs/gpt", "polyformer finetune --task classify|ner|pair|qa"):
        assert choice in message
    with pytest.raises(ConfigError, match="encoder-decoder with an LM head.*polyformer generate"):
        infer_task(config("lm", "encoder-decoder"), "m")
    with pytest.raises(ConfigError, match="head='none' is not a task head.*polyformer finetune"):
        infer_task(config("none"), "m")
    with pytest.raises(ConfigError, match="evaluate cannot score"):
        infer_task(config("mlm"), "m", verb="evaluate")
    assert task_for("classify", config("sequence-classification", task="pair"), "m") == "pair"
    assert task_for("ner", config("sequence-classification"), "m") == "ner"  # an explicit choice is kept (and checked later)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny BERT fine-tuned for a few steps on each task: the run directories and their data."""
    root = tmp_path_factory.mktemp("tasks")
    texts = [t for t, _ in SENTIMENT] + [" ".join(w) for w, _ in NER_SENTENCES] + [r["question"] + " " + r["context"] for r in QA_ROWS]
    base = encoder_dir(wordpiece_tokenizer(texts), root / "bert")
    out = {}
    for task, write in DATA.items():
        data = write(root)
        finetune(FinetuneSpec(task=task, model=str(base), data=str(data), dev_data=str(data), out=str(root / task),
                              **FAST, max_steps=2, eval_every=2, max_length=48))
        out[task] = (root / task, data)
    return root, base, out


@pytest.mark.parametrize("task", list(DATA))
def test_evaluate_and_predict_find_the_task_of_a_run(runs, task):
    _, _, by_task = runs
    run, data = by_task[task]
    evaluated = run_cli("evaluate", "--model", run, "--data", data)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout == run_cli("evaluate", "--task", task, "--model", run, "--data", data).stdout
    predicted = run_cli("predict", "--model", run, "--input", data)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout == run_cli("predict", "--task", task, "--model", run, "--input", data).stdout
    row = json.loads(predicted.stdout.splitlines()[0])
    assert {"classify": "label", "pair": "label", "ner": "entities", "qa": "answer"}[task] in row


def test_mlm_predicts_masks_and_decoders_ask_for_the_task(runs, tmp_path):
    root, _, by_task = runs
    tokenizer = wordpiece_tokenizer([t for t, _ in SENTIMENT])
    mlm = encoder_dir(tokenizer, tmp_path / "mlm", head="mlm", pooler=False)
    masked = run_cli("predict", "--model", mlm, "--input", write_jsonl(tmp_path / "m.jsonl", [{"text": "a [MASK] thriller"}]),
                     "--top-k", "3")
    assert masked.returncode == 0, masked.stderr
    assert len(json.loads(masked.stdout)["masks"][0]) == 3
    _, reviews = by_task["classify"]
    assert_one_line_error(run_cli("evaluate", "--model", mlm, "--data", reviews), "an MLM head", "polyformer finetune")
    decoder = decoder_dir(bpe_tokenizer([t for t, _ in SENTIMENT] + ["Text: Label: good bad"]), tmp_path / "llama")
    for verb, data_option in (("evaluate", "--data"), ("predict", "--input")):
        assert_one_line_error(run_cli(verb, "--model", decoder, data_option, reviews), "LM head fits more than one task",
                              "--task classify --prompt", "polyformer generate", "polyformer finetune")
    prompted = run_cli("evaluate", "--model", decoder, "--data", reviews, "--prompt", "--verbalizer", "fresh=good",
                       "--verbalizer", "rotten=bad")
    assert prompted.returncode == 0 and json.loads(prompted.stdout)["examples"] == len(SENTIMENT)
    assert_one_line_error(run_cli("predict", "--task", "ner", "--model", decoder, "--input", reviews, "--prompt"),
                          "--prompt classifies", "--task ner")
    seq2seq = seq2seq_dir(bpe_tokenizer([t for t, _ in SENTIMENT]), tmp_path / "s2s")
    assert_one_line_error(run_cli("predict", "--model", seq2seq, "--input", reviews), "encoder-decoder with an LM head")
    assert_one_line_error(run_cli("predict", "--model", root / "bert", "--input", reviews), "head='none' is not a task head")
