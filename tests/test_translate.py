"""Translation and text to text: layouts and masked losses, batched decoding, sacreBLEU, fine-tuning, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import polyformer as pf
from polyformer.config import dataclass_from_yaml
from polyformer.errors import ConfigError, DataError
from polyformer.tasks import recipe
from polyformer.tasks.decoding import DecodeSettings, decode
from polyformer.tasks.encoding import TaskTokenizer
from polyformer.tasks.formats import PairLayout
from polyformer.tasks.metrics import translation_scores
from polyformer.tasks.recipe import FinetuneSpec, finetune, task_options
from polyformer.tokenizers import train_bpe
from polyformer.training.objectives import IGNORE_INDEX, CausalLM
from tests.cli_runner import assert_one_line_error, run_cli
from tests.task_tiny import write_jsonl

EN = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
ES = ["uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez"]
PAIRS = [(f"the {EN[i % 10]} and the {EN[(3 * i + 1) % 10]} came", f"vinieron el {ES[i % 10]} y el {ES[(3 * i + 1) % 10]}")
         for i in range(20)]
TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, norm_placement="pre", final_norm=True)
SPECIALS = ("<pad>", "<s>", "</s>", "<sep>")


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe([t for pair in PAIRS for t in pair] * 4, 300, min_frequency=1, special_tokens=SPECIALS)


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", [{"text_a": a, "text_b": b} for a, b in PAIRS])


def tiny_model(tokenizer, arch: str, seed: int = 0, **overrides) -> pf.PolyformerModel:
    from polyformer.training.pretrain import sized_config

    torch.manual_seed(seed)
    return pf.PolyformerModel(sized_config("transformer-small", arch, tokenizer, 64, {**TINY, **overrides})).eval()


def spec_for(pairs_file: Path, out: Path, arch: str = "encoder-decoder", **settings) -> FinetuneSpec:
    model_config = {**TINY, **({"arch": "decoder"} if arch == "decoder" else {})}
    fields = dict(task="translate", preset="transformer-small", model_config=model_config, data=str(pairs_file),
                  dev_data=str(pairs_file), out=str(out), vocab_size=300, max_steps=150, batch_size=20, lr=1e-2,
                  warmup_steps=20, eval_every=150, label_smoothing=0.0, progress=False, patience=None,
                  max_new_tokens=16, max_length=48)
    return FinetuneSpec(**{**fields, **settings})


# ---- layouts and losses ----------------------------------------------------------------------
def test_decoder_loss_is_on_the_target_only(tokenizer) -> None:
    model = tiny_model(tokenizer, "decoder")
    layout = PairLayout(tokenizer, model.config, "separator", 48)
    source, target = PAIRS[0]
    encoded = layout.pairs([source], [target])[0]
    source_ids = tokenizer.encode(source, add_special_tokens=False)
    target_ids = tokenizer.encode(target, add_special_tokens=False)
    assert encoded.prompt == [tokenizer.bos_token_id, *source_ids, tokenizer.sep_token_id]
    assert encoded.target == [*target_ids, tokenizer.eos_token_id]
    feature = layout.feature(encoded)
    assert feature["input_ids"] == (encoded.prompt + encoded.target)[:-1]
    assert feature["labels"] == [IGNORE_INDEX] * (len(encoded.prompt) - 1) + encoded.target
    batch = {"input_ids": torch.tensor([feature["input_ids"]]), "labels": torch.tensor([feature["labels"]])}
    objective = CausalLM()
    assert int(objective.counts(batch)["lm"]) == len(encoded.target)
    logits = model(batch["input_ids"]).logits[0]  # the loss equals cross-entropy over the target positions alone
    start = len(encoded.prompt) - 1
    manual = torch.nn.functional.cross_entropy(logits[start:], torch.tensor(encoded.target), reduction="sum")
    assert torch.allclose(objective.compute(model, batch).sums["lm"], manual, atol=1e-5)


def test_chat_layout_ends_the_reply_at_the_end_of_turn(tokenizer) -> None:
    from polyformer.tokenizers import Tokenizer

    chat = Tokenizer(tokenizer.backend, tokenizer.special, chat_template=(
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"))
    model = tiny_model(chat, "decoder")
    layout = PairLayout(chat, model.config, "chat", 64, "To Spanish: {text}")
    encoded = layout.pairs([PAIRS[0][0]], [PAIRS[0][1]])[0]
    assert chat.decode(encoded.prompt, skip_special_tokens=False) == f"<s>user\nTo Spanish: {PAIRS[0][0]}</s>\n<s>assistant\n"
    assert chat.decode(encoded.target, skip_special_tokens=False) == f"{PAIRS[0][1]}</s>"
    assert encoded.target[-1] == chat.eos_token_id


@pytest.mark.parametrize("arch", ["encoder-decoder", "decoder"])
def test_a_long_source_is_cut_to_the_context_and_counted(tokenizer, arch: str) -> None:
    model = tiny_model(tokenizer, arch)
    layout = PairLayout(tokenizer, model.config, "encoder-decoder" if arch == "encoder-decoder" else "separator", 24)
    long_source = " ".join(PAIRS[0][0] for _ in range(10))
    short, cut = layout.pairs([PAIRS[1][0], long_source], [PAIRS[1][1], PAIRS[0][1]])
    assert not short.truncated and cut.truncated
    assert cut.target == short.target[:0] + layout.pairs([long_source], [PAIRS[0][1]])[0].target  # target kept whole
    if arch == "decoder":
        assert len(cut.prompt) + len(cut.target) <= 24 and cut.prompt[-1] == tokenizer.sep_token_id
    else:
        assert len(cut.prompt) <= 24


# ---- decoding ----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["encoder-decoder", "decoder"])
@pytest.mark.parametrize("num_beams", [1, 4])
def test_batched_decoding_equals_decoding_alone(tokenizer, arch: str, num_beams: int) -> None:
    model = tiny_model(tokenizer, arch, seed=3)
    kind = "encoder-decoder" if arch == "encoder-decoder" else "separator"
    layout = PairLayout(tokenizer, model.config, kind, 64)
    sources = [PAIRS[0][0], "ten", PAIRS[5][0] + " " + PAIRS[6][0], "the two"]
    settings = DecodeSettings(num_beams=num_beams, max_new_tokens=12, batch_size=4)
    batched = decode(model, layout, sources, settings)
    alone = [decode(model, layout, [source], settings)[0] for source in sources]
    assert [d.token_ids for d in batched] == [d.token_ids for d in alone]
    assert all(d.token_ids for d in batched)


# ---- metric -------------------------------------------------------------------------------------
def test_scores_equal_sacrebleu() -> None:
    sacrebleu = pytest.importorskip("sacrebleu")
    outputs = ["el gato se sentó en la alfombra", "hola a todos los amigos", "vino el uno"]
    references = ["el gato está sentado en la alfombra", "hola a todos mis amigos", "vinieron el uno y el dos"]
    metrics, signatures = translation_scores(outputs, references)
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outputs, [references]).score)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(outputs, [references]).score)
    assert signatures["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert translation_scores(references, references)[0]["bleu"] == pytest.approx(100.0)


def test_missing_sacrebleu_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_sacrebleu(name, *args, **kwargs):
        if name.startswith("sacrebleu"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sacrebleu)
    with pytest.raises(ConfigError, match="need the sacrebleu package: pip install sacrebleu"):
        translation_scores(["a"], ["a"])


# ---- fine-tuning --------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["encoder-decoder", "decoder"])
def test_a_tiny_model_learns_twenty_pairs_to_bleu_100(pairs_file: Path, tmp_path: Path, arch: str) -> None:
    result = finetune(spec_for(pairs_file, tmp_path / "run", arch))
    assert result.metrics["eval_bleu"] == pytest.approx(100.0)
    evaluation = recipe.evaluate("translate", result.model_dir, str(pairs_file), options=task_options(max_new_tokens=16))
    assert evaluation.metrics["bleu"] == pytest.approx(100.0) and evaluation.metrics["chrf"] == pytest.approx(100.0)
    assert evaluation.details["outputs"][0]["translation_text"] == PAIRS[0][1]
    translate = pf.pipeline("translation", result.model_dir, max_new_tokens=16)
    assert translate(PAIRS[3][0])["translation_text"] == PAIRS[3][1]
    assert pf.load(result.model_dir).config.extra["task"] == "translate"


def test_the_same_seed_gives_the_same_run(pairs_file: Path, tmp_path: Path) -> None:
    first = finetune(spec_for(pairs_file, tmp_path / "a", max_steps=20, eval_every=20))
    second = finetune(spec_for(pairs_file, tmp_path / "b", max_steps=20, eval_every=20))
    assert [row["loss"] for row in first.history] == [row["loss"] for row in second.history]
    assert (tmp_path / "a/model/tokenizer.json").read_text() == (tmp_path / "b/model/tokenizer.json").read_text()


def test_truncated_training_pairs_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"text_a": a, "text_b": b} for a, b in PAIRS] + [{"text_a": " ".join([PAIRS[0][0]] * 30), "text_b": "uno"}]
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="polyformer.tasks"):
        finetune(spec_for(data, tmp_path / "run", max_steps=2, eval_every=2))
    assert "1 of 21 training pairs were longer than max_length=48 tokens and were truncated" in caplog.text


def test_reverse_direction_swaps_the_sides(pairs_file: Path) -> None:
    forward = recipe.get_task("translate").load(str(pairs_file), "all", task_options())
    backward = recipe.get_task("seq2seq").load(str(pairs_file), "all", task_options(direction="reverse"))
    assert (forward[0].source, forward[0].target) == PAIRS[0] == (backward[0].target, backward[0].source)


# ---- bad input ---------------------------------------------------------------------------------
def test_an_empty_side_names_the_file_and_line(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "bad.jsonl", [{"text_a": "one", "text_b": "uno"}, {"text_a": "two", "text_b": " "}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'text_b' is empty"):
        recipe.get_task("translate").load(str(data), "all", task_options())


def test_an_unknown_column_is_one_line(pairs_file: Path, tmp_path: Path) -> None:
    result = run_cli("finetune", "--task", "translate", "--preset", "transformer-small", "--data", pairs_file,
                     "--source-column", "english", "--out", tmp_path / "run")
    assert_one_line_error(result, "pairs.jsonl:1", "'english'", "text_a, text_b")


def test_bad_direction_and_encoder_preset(pairs_file: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="direction='sideways' is not one of forward, reverse"):
        recipe.get_task("translate").load(str(pairs_file), "all", task_options(direction="sideways"))
    with pytest.raises(ConfigError, match="preset 'bert-tiny' is an encoder"):
        finetune(spec_for(pairs_file, tmp_path / "run", preset="bert-tiny", model_config={}))


# ---- command line ------------------------------------------------------------------------------
def test_cli_finetune_evaluate_predict(pairs_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_cli("finetune", "--task", "seq2seq", "--preset", "transformer-small", "--data", pairs_file,
                     "--dev-data", pairs_file, "--out", run, "--max-steps", "4", "--batch-size", "4", "--vocab-size", "300",
                     "--set", "hidden_size=32", "--set", "num_layers=1", "--set", "intermediate_size=64",
                     "--max-new-tokens", "4", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert (run / "model" / "tokenizer.json").is_file()
    result = run_cli("evaluate", "--task", "translate", "--model", run, "--data", pairs_file, "--max-new-tokens", "4",
                     "--num-beams", "2", "--out", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    assert "BLEU signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in result.stderr
    assert len((tmp_path / "eval" / "translations.jsonl").read_text().splitlines()) == len(PAIRS)
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": "v1", "text_a": PAIRS[0][0]}])
    result = run_cli("predict", "--task", "translate", "--model", run, "--input", inputs, "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    import json

    row = json.loads(result.stdout)
    assert row["id"] == "v1" and row["source"] == PAIRS[0][0] and isinstance(row["translation_text"], str)
    inferred = run_cli("predict", "--model", run, "--input", inputs, "--max-new-tokens", "4")  # the task from the model
    assert inferred.returncode == 0, inferred.stderr
    assert json.loads(inferred.stdout) == row


def test_copy_source_baseline(pairs_file: Path, tmp_path: Path) -> None:
    sacrebleu = pytest.importorskip("sacrebleu")
    result = run_cli("evaluate", "--task", "translate", "--baseline", "copy", "--data", pairs_file)
    assert result.returncode == 0, result.stderr
    import json

    scores = json.loads(result.stdout)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu([a for a, _ in PAIRS], [[b for _, b in PAIRS]]).score)
    assert_one_line_error(run_cli("evaluate", "--task", "translate", "--data", pairs_file), "--model", "--baseline copy")


@pytest.mark.parametrize("name", ["translate_bible_en_es", "translate_bible_es_en", "translate_bible_decoder_en_es",
                                  "translate_smollm2_bible_en_es"])
def test_example_configs_are_valid(name: str) -> None:
    spec = dataclass_from_yaml(recipe.FinetuneSpec, Path(__file__).parents[1] / "examples" / f"{name}.yaml",
                               {"out": "unused"})
    assert spec.task == "translate" and spec.data == "bible-en-es"


def test_a_csv_with_named_columns(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "pairs.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "document", "summary"])
        writer.writerows([(f"d{i}", a, b) for i, (a, b) in enumerate(PAIRS)])
    options = task_options({"text_a": "document", "text_b": "summary"})
    pairs = recipe.get_task("translate").load(str(path), "all", options)
    assert [(p.source, p.target, p.id) for p in pairs[:2]] == [(*PAIRS[0], "d0"), (*PAIRS[1], "d1")]
    assert pairs[1].where == f"{path}:3"
    assert len(recipe.get_task("translate").load(str(path), "train", options)) == 16  # 80 / 10 / 10 of 20


def test_a_bad_instruction_is_one_line(tokenizer) -> None:
    from polyformer.tokenizers import Tokenizer

    chat = Tokenizer(tokenizer.backend, tokenizer.special, chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}")
    model = tiny_model(chat, "decoder")
    with pytest.raises(ConfigError, match="has no {text}"):
        PairLayout(chat, model.config, "chat", 64, "Translate this")
    with pytest.raises(ConfigError, match="does not format"):
        PairLayout(chat, model.config, "chat", 64, "Translate {text} to {language}")
