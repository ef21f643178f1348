"""`polyformer finetune / evaluate / predict` end to end, and user mistakes as one `error:` line."""

from __future__ import annotations

import io
import json

import pytest
from cli_runner import assert_one_line_error, run_cli
from task_tiny import (
    SENTIMENT,
    bpe_tokenizer,
    decoder_dir,
    encoder_dir,
    sentiment_rows,
    wordpiece_tokenizer,
    write_csv,
    write_jsonl,
)
from train_tiny import one_thread  # noqa: F401  (fixture)

import polyformer as pf

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ["--batch-size", "8", "--lr", "3e-3", "--warmup-ratio", "0", "--weight-decay", "0", "--no-progress"]
TINY = ["--set", "hidden_size=32", "--set", "num_layers=1", "--set", "num_heads=2", "--set", "intermediate_size=64"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A BERT pretrained (2 steps, MLM + NSP) with `polyformer pretrain`, then fine-tuned from its run directory."""
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(f"{text}\n{text} again" for text, _ in SENTIMENT * 2) + "\n")
    pretrained = run_cli("pretrain", "--arch", "encoder", "--data", corpus, "--vocab-size", "200", "--block-size", "24",
                         "--batch-size", "4", "--max-steps", "2", "--eval-batches", "1", *TINY, "--no-progress", "--out", root / "bert")
    assert pretrained.returncode == 0, pretrained.stderr
    data = write_csv(root / "reviews.csv", sentiment_rows())
    tuned = run_cli("finetune", "--task", "classify", "--model", root / "bert", "--data", data, "--dev-data", data,
                    "--max-steps", "40", "--eval-every", "10", *FAST, "--out", root / "run")
    assert tuned.returncode == 0, tuned.stderr
    return root, data


def test_finetune_from_a_pretraining_run_then_evaluate_and_predict(run):
    root, data = run
    model = pf.load(root / "run" / "model")
    assert model.config.head == "sequence-classification" and model.config.labels == ["fresh", "rotten"]
    assert json.loads((root / "run" / "dev_metrics.json").read_text())["eval_accuracy"] == 1.0
    evaluated = run_cli("evaluate", "--task", "classify", "--model", root / "run", "--data", data, "--out", root / "report")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert metrics["accuracy"] == 1.0 and metrics["examples"] == 8
    assert (root / "report" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((root / "report" / "metrics.json").read_text())["confusion_matrix"] == [[4, 0], [0, 4]]
    texts = root / "texts.txt"
    texts.write_text("\n".join(text for text, _ in SENTIMENT) + "\n\n")
    predicted = run_cli("predict", "--task", "classify", "--model", root / "run", "--input", texts)
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [row["label"] for row in rows] == [label for _, label in SENTIMENT]
    assert rows[0]["text"] == SENTIMENT[0][0] and set(rows[0]["scores"]) == {"fresh", "rotten"}


def test_predict_reads_stdin_lines_and_json_records(run, monkeypatch):
    root, _ = run
    monkeypatch.setattr("sys.stdin", io.StringIO('the best film of the year\n\n{"text": "tedious and badly acted", "id": 7}\n'))
    result = run_cli("predict", "--task", "classify", "--model", root / "run", "--input", "-")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == ["fresh", "rotten"]


def test_fill_mask_and_prompting_through_the_cli(tmp_path):
    tokenizer = wordpiece_tokenizer([text for text, _ in SENTIMENT])
    mlm = encoder_dir(tokenizer, tmp_path / "mlm", head="mlm", pooler=False)
    masked = run_cli("predict", "--task", "fill-mask", "--model", mlm, "--input", write_jsonl(tmp_path / "m.jsonl", [
        {"text": "a gripping [MASK] thriller"}]), "--top-k", "2")
    assert masked.returncode == 0, masked.stderr
    (row,) = [json.loads(line) for line in masked.stdout.splitlines()]
    assert len(row["masks"]) == 1 and len(row["masks"][0]) == 2
    decoder = decoder_dir(bpe_tokenizer([text for text, _ in SENTIMENT] + ["Text: Label: good bad"]), tmp_path / "llama")
    data = write_jsonl(tmp_path / "reviews.jsonl", sentiment_rows() * 2)
    prompted = run_cli("evaluate", "--task", "classify", "--model", decoder, "--data", data, "--prompt", "--shots", "2",
                       "--verbalizer", "fresh=good", "--verbalizer", "rotten=bad")
    assert prompted.returncode == 0, prompted.stderr
    metrics = json.loads(prompted.stdout)
    assert metrics["shots"] == 2 and metrics["examples"] == 14
    answered = run_cli("predict", "--task", "classify", "--model", decoder, "--input", write_jsonl(tmp_path / "in.jsonl", [
        {"text": "dull"}]), "--prompt", "--calibrate", "--verbalizer", "fresh=good", "--verbalizer", "rotten=bad")
    assert answered.returncode == 0, answered.stderr
    assert set(json.loads(answered.stdout)["scores"]) == {"fresh", "rotten"}


def test_user_mistakes_are_one_error_line(run, tmp_path):
    root, data = run
    plain = encoder_dir(wordpiece_tokenizer(["plain words"]), tmp_path / "plain")
    assert_one_line_error(run_cli("evaluate", "--task", "classify", "--model", plain, "--data", data),
                          "head='none'", "polyformer finetune --task classify")
    assert_one_line_error(run_cli("predict", "--task", "ner", "--model", root / "run", "--input", data),
                          "not a token-classification head", "polyformer finetune --task ner")
    unknown = write_jsonl(tmp_path / "test.jsonl", [{"text": "fine", "label": "fresh"}, {"text": "meh", "label": "mixed"}])
    assert_one_line_error(run_cli("evaluate", "--task", "classify", "--model", root / "run", "--data", unknown),
                          "test.jsonl:2", "unknown label 'mixed'")
    broken = tmp_path / "broken.csv"
    broken.write_text("text,label\nfine,fresh\nbad, line, here,rotten\n")
    assert_one_line_error(run_cli("evaluate", "--task", "classify", "--model", root / "run", "--data", broken),
                          "broken.csv:3", "malformed csv row")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n{oops\n')
    assert_one_line_error(run_cli("predict", "--task", "classify", "--model", root / "run", "--input", bad_json),
                          "bad.jsonl:2", "not valid JSON")
    assert_one_line_error(run_cli("finetune", "--task", "classify", "--model", plain, "--data", data), "--out")
    assert_one_line_error(run_cli("finetune", "--task", "summarize", "--model", plain, "--data", data, "--out", tmp_path / "x"),
                          "task='summarize'")
    assert_one_line_error(run_cli("finetune", "--task", "classify", "--model", root / "run", "--data", data,
                                  "--dev-data", data, "--out", root / "run"), "already holds a fine-tuning run")
    assert_one_line_error(run_cli("evaluate", "--task", "classify", "--model", root / "run", "--data", tmp_path / "nope.csv"),
                          "nope.csv: no such file")
    assert_one_line_error(run_cli("evaluate", "--task", "classify", "--model", plain, "--data", data, "--prompt"),
                          "prompting needs a decoder with an LM head")


@pytest.mark.parametrize("verb", ["finetune", "evaluate", "predict"])
def test_every_verb_has_help(verb):
    result = run_cli(verb, "--help")
    assert result.returncode == 0 and "--model" in result.stdout and "--task" in result.stdout
