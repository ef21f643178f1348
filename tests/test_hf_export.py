"""`convert --to hf` / `pf.save(format="hf", tokenizer=...)` give folders transformers' pipelines run as they are.

Each round trip compares transformers on the exported folder with polyformer on the source: the
same greedy text (SmolLM2 GGUF), the same labels and scores (a fine-tuned classifier), the same
entities (a fine-tuned NER run), the same sentence vectors (a sentence-transformers folder).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from task_tiny import (
    FAST,
    NER_SENTENCES,
    SENTIMENT,
    bpe_tokenizer,
    encoder_dir,
    sentiment_rows,
    seq2seq_dir,
    wordpiece_tokenizer,
    write_conll,
    write_csv,
)
from train_tiny import one_thread  # noqa: F401  (fixture)

import polyformer as pf
from polyformer.errors import TokenizerError
from polyformer.tasks.recipe import FinetuneSpec, finetune, predict
from polyformer.tokenizers import CharTokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "The capital of France is"


def _files(folder) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def test_gguf_converts_to_a_folder_transformers_generates_the_same_text_from(smollm2_gguf, tmp_path):
    from polyformer.generation.text_pipeline import TextGenerationPipeline

    out = tmp_path / "smollm2-hf"
    converted = run_cli("convert", smollm2_gguf, out, "--to", "hf")
    assert converted.returncode == 0, converted.stderr
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= _files(out)
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2 and generation["bos_token_id"] == 1  # <|im_end|>, <|im_start|>
    theirs = transformers.pipeline("text-generation", str(out), device="cpu")
    assert theirs.tokenizer.eos_token == "<|im_end|>" and theirs.tokenizer.bos_token == "<|im_start|>"
    texts = [PROMPT, "Once upon a time, 12 dragons"]
    reference = [row[0]["generated_text"] for row in theirs(texts, max_new_tokens=6, do_sample=False, return_full_text=False)]
    ours = TextGenerationPipeline(pf.load(smollm2_gguf, dtype="float32"), pf.load_tokenizer(smollm2_gguf))
    assert [ours(text, max_new_tokens=6) for text in texts] == reference
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    assert theirs.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == \
        ours.chat_prompt(messages)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A tiny BERT fine-tuned to separate the sentiment snippets (a polyformer run directory)."""
    root = tmp_path_factory.mktemp("clf")
    tokenizer = wordpiece_tokenizer([text for text, _ in SENTIMENT])
    data = write_csv(root / "reviews.csv", sentiment_rows())
    spec = FinetuneSpec(task="classify", model=str(encoder_dir(tokenizer, root / "bert")), data=str(data),
                        dev_data=str(data), out=str(root / "run"), **FAST, max_steps=30, eval_every=30)
    finetune(spec)
    return root / "run"


def test_fine_tuned_classifier_run_exports_to_the_text_classification_pipeline(classifier_run, tmp_path):
    out = tmp_path / "hf"
    converted = run_cli("convert", classifier_run, out, "--to", "hf")  # the run directory stands for its model/
    assert converted.returncode == 0, converted.stderr
    assert "vocab.txt" in _files(out) and "generation_config.json" not in _files(out)
    theirs = transformers.pipeline("text-classification", str(out), device="cpu", top_k=None)
    assert type(theirs.tokenizer).__name__.startswith("BertTokenizer")
    texts = [text for text, _ in SENTIMENT] + ["an unseen and rather ORDINARY film"]
    ours = list(predict(None, classifier_run, texts))
    assert [row["label"] for row in ours[:-1]] == [label for _, label in SENTIMENT]  # it learnt the data
    for row, scores in zip(ours, theirs(texts)):
        assert scores[0]["label"] == row["label"]
        assert {s["label"]: s["score"] for s in scores} == pytest.approx(row["scores"], abs=1e-5)


def test_fine_tuned_ner_run_exports_to_the_token_classification_pipeline(tmp_path):
    tokenizer = wordpiece_tokenizer([" ".join(words) for words, _ in NER_SENTENCES])
    data = write_conll(tmp_path / "train.conll")
    spec = FinetuneSpec(task="ner", model=str(encoder_dir(tokenizer, tmp_path / "bert")), data=str(data),
                        dev_data=str(data), out=str(tmp_path / "run"), **{**FAST, "lr": 5e-3}, max_steps=60, eval_every=60)
    result = finetune(spec)
    pf.save(pf.load(result.model_dir), tmp_path / "hf", format="hf", tokenizer=pf.load_tokenizer(result.model_dir))
    theirs = transformers.pipeline("token-classification", str(tmp_path / "hf"), device="cpu", aggregation_strategy="first")
    assert theirs.model.config.id2label == dict(enumerate(pf.load(result.model_dir).config.labels))
    texts = [" ".join(words) for words, _ in NER_SENTENCES] + ["Obama flew to Berlin with Tim Cook"]
    ours = list(predict(None, result.model_dir, texts))
    assert sum(len(row["entities"]) for row in ours) >= 8  # it found the entities
    for row, entities in zip(ours, theirs(texts)):
        assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == \
            [(e["entity"], e["start"], e["end"]) for e in row["entities"]]
        assert [e["score"] for e in entities] == pytest.approx([e["score"] for e in row["entities"]], abs=1e-5)


def test_sentence_transformers_folder_keeps_its_modules(tiny_sentence_encoder_dir, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    out = tmp_path / "st"
    converted = run_cli("convert", tiny_sentence_encoder_dir, out, "--to", "hf")
    assert converted.returncode == 0, converted.stderr
    assert {"modules.json", "1_Pooling/config.json", "sentence_bert_config.json", "vocab.txt"} <= _files(out)
    texts = ["a gripping thriller", "Héllo wörld, 北京"]
    ours = pf.SentenceEncoder.load(tiny_sentence_encoder_dir).encode(texts)
    theirs = sentence_transformers.SentenceTransformer(str(out), device="cpu").encode(texts)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_seq2seq_generation_config_and_tokenizer_classes(tmp_path):
    texts = ["the cat sat on the mat", "Héllo WORLD naïve 北京", "don't stop"]
    seq2seq = seq2seq_dir(bpe_tokenizer(texts), tmp_path / "s2s")
    converted = run_cli("convert", seq2seq, tmp_path / "s2s-hf", "--to", "hf")
    assert converted.returncode == 0, converted.stderr
    model = pf.load(seq2seq)
    generation = transformers.GenerationConfig.from_pretrained(tmp_path / "s2s-hf")
    assert generation.decoder_start_token_id == model.config.decoder_start_token_id
    assert generation.pad_token_id == model.config.pad_token_id
    assert model.config.eos_token_id in np.atleast_1d(generation.eos_token_id)
    byte_level = transformers.AutoTokenizer.from_pretrained(tmp_path / "s2s-hf")
    assert [byte_level(text)["input_ids"] for text in texts] == [pf.load_tokenizer(seq2seq).encode(t) for t in texts]
    for cased in (False, True):  # BertTokenizer rebuilds its normaliser from the config: it must say what the backend does
        tokenizer = wordpiece_tokenizer(texts)
        tokenizer.backend.normalizer.lowercase = not cased
        tokenizer.save(tmp_path / f"wp{cased}")
        bert = transformers.AutoTokenizer.from_pretrained(tmp_path / f"wp{cased}")
        assert type(bert).__name__.startswith("BertTokenizer") and bert.mask_token == "[MASK]"
        assert [bert(text)["input_ids"] for text in texts] == [tokenizer.encode(text) for text in texts]
    with pytest.raises(TokenizerError, match="CharTokenizer has no transformers equivalent"):
        pf.save(model, tmp_path / "char", format="hf", tokenizer=CharTokenizer("abc"))
    assert not (tmp_path / "char").exists()


def test_model_without_tokenizer_files_converts_with_a_note(tmp_path):
    torch.manual_seed(0)
    model = pf.PolyformerModel(pf.preset("gpt-tiny", vocab_size=64, hidden_size=32, num_layers=1, num_heads=2,
                                         intermediate_size=64, max_positions=32))
    pf.save(model, tmp_path / "bare")
    converted = run_cli("convert", tmp_path / "bare", tmp_path / "hf", "--to", "hf")
    assert converted.returncode == 0 and "has no tokenizer files" in converted.stderr
    assert _files(tmp_path / "hf") == {"config.json", "model.safetensors", "generation_config.json"}
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    ids = torch.tensor([[1, 5, 9, 3]])
    torch.testing.assert_close(reference(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-4)
