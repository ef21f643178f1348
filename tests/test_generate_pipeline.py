"""`model.generate`, `TextGenerationPipeline`, and SmolLM2 greedy decoding against transformers.generate."""

from __future__ import annotations

import pytest
import torch
from test_gguf import PROMPT, needs_accelerate

import polyformer as pf
from polyformer.config import preset
from polyformer.errors import ConfigError, DataError
from polyformer.generation import GenerationConfig, generate, make_config
from polyformer.generation.text import encode_prompts
from polyformer.generation.text_pipeline import TextGenerationPipeline
from polyformer.models import PolyformerModel
from polyformer.tokenizers import train_bpe

transformers = pytest.importorskip("transformers")

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "café crème and naïve words", "hello there world"] * 4
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_chat_pipeline() -> TextGenerationPipeline:
    """A random GPT (larger weights: varied outputs) with a BPE tokenizer that has a chat template."""
    tokenizer = train_bpe(CORPUS, vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = TEMPLATE
    eos = tokenizer.token_to_id("<|im_end|>")
    torch.manual_seed(0)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=tokenizer.vocab_size, max_positions=96,
                                   eos_token_id=eos, bos_token_id=eos, pad_token_id=eos)).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.1)
    return TextGenerationPipeline(model, tokenizer)


@pytest.fixture(scope="module")
def pipe() -> TextGenerationPipeline:
    return tiny_chat_pipeline()


def test_model_generate_is_the_engine_with_options_over_a_config(pipe):
    model = pipe.model
    ids = torch.randint(3, 300, (2, 5), generator=torch.Generator().manual_seed(0))
    base = make_config(max_new_tokens=6, temperature=0.9, seed=4)
    expected = generate(model, ids, None, make_config(max_new_tokens=9, temperature=0.9, seed=4))
    got = model.generate(ids, config=base, max_new_tokens=9)
    assert torch.equal(got.sequences, expected.sequences)
    streamed = torch.stack(list(model.generate(ids, stream=True, max_new_tokens=9, temperature=0.9, seed=4)), 1)
    assert torch.equal(streamed, expected.sequences)
    with pytest.raises(ConfigError, match="unknown field.*temprature"):
        model.generate(ids, temprature=0.5)
    with pytest.raises(ConfigError, match="streaming"):
        model.generate(ids, stream=True, num_beams=2)


def test_do_sample_switches_between_greedy_and_sampling(pipe):
    """transformers' switch: False is greedy whatever the temperature, True samples (at 1.0 unless given)."""
    model = pipe.model
    ids = torch.randint(3, 300, (2, 5), generator=torch.Generator().manual_seed(0))
    greedy = model.generate(ids, max_new_tokens=8).sequences
    assert torch.equal(model.generate(ids, do_sample=False, max_new_tokens=8).sequences, greedy)
    assert torch.equal(model.generate(ids, do_sample=False, temperature=0.7, seed=1, max_new_tokens=8).sequences, greedy)
    sampled = model.generate(ids, temperature=1.0, seed=3, max_new_tokens=8).sequences
    assert not torch.equal(sampled, greedy)
    assert torch.equal(model.generate(ids, do_sample=True, seed=3, max_new_tokens=8).sequences, sampled)
    cooler = model.generate(ids, temperature=0.5, seed=3, max_new_tokens=8).sequences
    assert torch.equal(model.generate(ids, do_sample=True, temperature=0.5, seed=3, max_new_tokens=8).sequences, cooler)
    assert make_config(make_config(temperature=0.7), do_sample=False).sampling.temperature == 0.0
    assert make_config(make_config(do_sample=False), temperature=0.7).sampling.temperature == 0.7  # not stored: later options decide
    assert pipe("the cat sat", do_sample=False, max_new_tokens=8) == pipe("the cat sat", max_new_tokens=8)
    with pytest.raises(ConfigError, match="do_sample must be true or false"):
        model.generate(ids, do_sample="yes")


def test_pipeline_n_best_and_independent_samples(pipe):
    prompts = ["the cat sat", "café crème"]
    beams = pipe.complete(prompts, max_new_tokens=8, num_beams=4, num_return_sequences=4)
    tokens = pipe.model.generate(*encode_prompts(pipe.model, pipe.tokenizer, prompts),
                                 pipe.request(max_new_tokens=8, num_beams=4, num_return_sequences=4))
    assert [[c.token_ids for c in b.candidates] for b in beams] == [
        [row[:n] for row, n in zip(tokens.sequences.tolist()[i * 4 : i * 4 + 4], tokens.lengths[i * 4 : i * 4 + 4])]
        for i in range(2)]
    for completion in beams:
        scores = [c.score for c in completion.candidates]
        assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert pipe(prompts, max_new_tokens=8, num_beams=4) == [b.text for b in beams]  # one beam asked: the best
    options = {"max_new_tokens": 8, "temperature": 1.0, "num_return_sequences": 3}
    samples = pipe.complete(prompts, seed=2, **options)
    assert [len({c.text for c in s.candidates}) for s in samples] == [3, 3]
    assert samples == pipe.complete(prompts, seed=2, **options) != pipe.complete(prompts, seed=9, **options)


def test_pipeline_texts_streams_and_chat_agree(pipe):
    prompts = ["the cat sat", "café crème"]
    texts = pipe(prompts, max_new_tokens=12)
    assert texts == [c.text for c in pipe.complete(prompts, max_new_tokens=12)]
    assert pipe(prompts[1], max_new_tokens=12) == texts[1]
    assert "".join(pipe.stream(prompts[1], max_new_tokens=12)) == texts[1]
    pieces = ["", ""]
    for row, piece in pipe.stream_batch(prompts, max_new_tokens=12):
        pieces[row] += piece
    assert pieces == texts
    messages = [{"role": "user", "content": "hello there"}]
    prompt = pipe.chat_prompt(messages)
    assert prompt.endswith("<|im_start|>assistant\n")
    reply = pipe.chat(messages, max_new_tokens=12)
    assert reply == "".join(pipe.chat_stream(messages, max_new_tokens=12))
    assert reply == pipe.complete([prompt], add_special_tokens=False, max_new_tokens=12)[0].text
    # the chat turn marker is the model's EOS: the reply ends there, never showing it
    assert "<|im_end|>" not in reply


def test_sampling_is_seeded_per_request(pipe):
    first = pipe("the dog", max_new_tokens=10, temperature=1.0, seed=1)
    assert first == pipe("the dog", max_new_tokens=10, temperature=1.0, seed=1)
    assert first != pipe("the dog", max_new_tokens=10, temperature=1.0, seed=2)


@pytest.mark.parametrize("options, error, needle", [
    ({"max_new_tokens": 0}, ConfigError, "max_new_tokens"),
    ({"max_new_tokens": -3}, ConfigError, "max_new_tokens"),
    ({"temperature": -0.5}, ConfigError, "temperature"),
    ({"top_p": 0.0}, ConfigError, "top_p"),
    ({"top_p": 1.5}, ConfigError, "top_p"),
    ({"eos_token_id": 99_999}, ConfigError, "outside the vocabulary"),
    ({"max_new_tokens": 95}, ConfigError, "context of 96"),
    ({"num_return_sequences": 2}, ConfigError, "num_return_sequences=2 with greedy"),
    ({"num_beams": 2, "num_return_sequences": 3}, ConfigError, "exceeds num_beams"),
])
def test_bad_requests_are_typed_errors(pipe, options, error, needle):
    with pytest.raises(error, match=needle):
        pipe("the cat", **options)


def test_bad_prompts_are_data_errors(pipe):
    for prompts in ("", [], ["ok", ""], [3]):
        with pytest.raises(DataError):
            pipe(prompts)
    with pytest.raises(ConfigError, match="longer than the model's context of 96"):
        pipe("the cat sat on the mat " * 40, max_new_tokens=2)


# ---- SmolLM2-135M-Instruct against transformers.generate -----------------------------------------


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    return pf.load(smollm2_gguf, dtype="float32"), pf.load_tokenizer(smollm2_gguf)


def left_padded_prompts(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tokenizer.encode(text) for text in texts]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def assert_greedy_matches(oracle, model, ids, mask, new_tokens: int) -> None:
    """Exactly `new_tokens` greedy tokens per row (EOS held back on both sides), static and dynamic caches."""
    with torch.inference_mode():
        expected = oracle.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, pad_token_id=0)[:, ids.shape[1]:]
    for cache in ("dynamic", "static"):
        config = make_config(max_new_tokens=new_tokens, min_new_tokens=new_tokens, cache=cache)
        assert torch.equal(model.generate(ids, mask, config).sequences, expected), cache


def test_smollm2_left_padded_greedy_matches_transformers(smollm2, tmp_path):
    """Short variant: the weights exported as a transformers folder (fast to read), two prompts of different lengths."""
    model, tokenizer = smollm2
    pf.save(model, tmp_path / "hf", format="hf")
    oracle = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids, mask = left_padded_prompts(tokenizer, [PROMPT[:160], "The capital of France is"])
    assert_greedy_matches(oracle, model, ids, mask, 12)


@needs_accelerate
@pytest.mark.slow
def test_smollm2_64_greedy_tokens_match_transformers_reading_the_gguf(smollm2, smollm2_gguf):
    model, tokenizer = smollm2
    oracle = transformers.AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name).eval()
    ids, mask = left_padded_prompts(tokenizer, [PROMPT])
    assert_greedy_matches(oracle, model, ids, mask, 64)
