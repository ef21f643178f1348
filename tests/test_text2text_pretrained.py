"""Text to text from pretrained checkpoints: a transformers Marian folder, a chat decoder (`--task lm`), SmolLM2's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import polyformer as pf
from polyformer.tasks import recipe
from polyformer.tasks.decoding import DecodeSettings, decode
from polyformer.tasks.formats import PairLayout, layout_kind
from polyformer.tasks.recipe import FinetuneSpec, finetune, task_options
from polyformer.tokenizers import Tokenizer, train_bpe
from tests.cli_runner import run_cli
from tests.task_tiny import decoder_dir, write_jsonl

PAIRS = [("the one and the two came", "vinieron el uno y el dos"), ("the three and the four went", "fueron el tres y el cuatro"),
         ("the five came", "vino el cinco"), ("the six and the one went", "fueron el seis y el uno")] * 3
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    base = train_bpe([t for pair in PAIRS for t in pair] * 4, 300, min_frequency=1, special_tokens=("<pad>", "<s>", "</s>"))
    return Tokenizer(base.backend, base.special, chat_template=TEMPLATE)


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", [{"text_a": a, "text_b": b} for a, b in PAIRS])


def marian_dir(tokenizer: Tokenizer, out: Path) -> Path:
    """A random-init transformers MarianMTModel saved with save_pretrained, our BPE's tokenizer.json beside it."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = transformers.MarianConfig(
        vocab_size=tokenizer.vocab_size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=eos, forced_eos_token_id=eos)
    transformers.MarianMTModel(config).save_pretrained(out)
    tokenizer.save(out)
    return out


def test_a_marian_folder_fine_tunes_and_decodes_batched_as_alone(tokenizer: Tokenizer, pairs_file: Path, tmp_path: Path) -> None:
    folder = marian_dir(tokenizer, tmp_path / "marian")
    spec = FinetuneSpec(task="translate", model=str(folder), data=str(pairs_file), dev_data=str(pairs_file),
                        out=str(tmp_path / "run"), max_steps=30, batch_size=12, lr=1e-2, eval_every=30, patience=None,
                        progress=False, max_new_tokens=8, max_length=32, label_smoothing=0.0)
    result = finetune(spec)
    losses = [row["loss"] for row in result.history if "loss" in row]
    assert losses[-1] < 0.5 * losses[0]
    model = pf.load(result.model_dir)
    assert model.config.arch == "encoder-decoder" and model.config.extra["task"] == "translate"
    layout = PairLayout(tokenizer, model.config, layout_kind(model.config, tokenizer), 32)
    sources = [a for a, _ in PAIRS[:4]]
    settings = DecodeSettings(num_beams=4, max_new_tokens=8)
    assert [d.token_ids for d in decode(model, layout, sources, settings)] == \
           [decode(model, layout, [s], settings)[0].token_ids for s in sources]


def test_lm_task_tunes_a_chat_decoder_on_the_responses(tokenizer: Tokenizer, pairs_file: Path, tmp_path: Path) -> None:
    folder = decoder_dir(tokenizer, tmp_path / "llama")
    before = recipe.evaluate("lm", folder, str(pairs_file)).metrics
    spec = FinetuneSpec(task="lm", model=str(folder), data=str(pairs_file), dev_data=str(pairs_file),
                        out=str(tmp_path / "run"), max_steps=40, batch_size=12, lr=1e-2, eval_every=40, patience=None,
                        progress=False, max_length=64, label_smoothing=0.0)
    result = finetune(spec)
    assert pf.load(result.model_dir).config.extra["pair_format"] == "chat"
    after = recipe.evaluate("lm", result.model_dir, str(pairs_file)).metrics
    assert after["loss"] < before["loss"] / 2 and after["perplexity"] == pytest.approx(torch.tensor(after["loss"]).exp().item(), rel=1e-4)
    assert after["tokens"] == before["tokens"] == sum(len(tokenizer.encode(b, add_special_tokens=False)) + 1 for _, b in PAIRS)
    out = run_cli("predict", "--task", "lm", "--model", result.model_dir, "--input", pairs_file, "--max-new-tokens", "8",
                  "--num-beams", "1")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == len(PAIRS) and all(isinstance(r["generated_text"], str) for r in rows)


def test_smollm2_zero_shot_prompt_layout(smollm2_gguf: Path) -> None:
    tok = pf.load_tokenizer(smollm2_gguf)
    config = pf.preset("smollm2-135m")
    options = recipe.get_task("translate").options_for("bible-en-es", task_options())
    layout = PairLayout(tok, config, layout_kind(config, tok), 256, languages=options.languages)
    encoded = layout.sources(["In the beginning, God created the heavens and the earth."])[0]
    prompt = tok.decode(encoded.prompt, skip_special_tokens=False)
    assert prompt.endswith("<|im_start|>user\nTranslate the following English text into Spanish. Reply with the "
                           "translation only.\n\nIn the beginning, God created the heavens and the earth.<|im_end|>\n"
                           "<|im_start|>assistant\n")
    assert layout.eos_ids == [tok.eos_token_id] == [2]
