"""Batched generation, beam search and text streaming agree with transformers and with themselves."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import polyformer as pf
from polyformer.config import preset
from polyformer.errors import ConfigError, DataError
from polyformer.generation import GenerationConfig, generate, stream
from polyformer.generation.text import (
    TextStreamer,
    cut_at_stop,
    encode_prompts,
    generate_text,
    stream_text,
)
from polyformer.models import PolyformerModel
from polyformer.tokenizers import train_bpe
from polyformer.tokenizers.char import CharTokenizer

VOCAB = 97


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models decode fastest on one thread, and a busy shared machine cannot stall them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def perturb(model: torch.nn.Module) -> None:
    torch.manual_seed(2)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)


def tiny_hf(kind: str, directory):
    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_head=4, n_layer=2,
                                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                          num_hidden_layers=2, intermediate_size=48, max_position_embeddings=64,
                                          bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = transformers.LlamaForCausalLM(config)
    model.eval()
    perturb(model)
    model.save_pretrained(directory)
    return model


def left_padded() -> tuple[torch.Tensor, torch.Tensor]:
    """Two prompts of lengths 7 and 4, left-padded with 0."""
    torch.manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    return ids.masked_fill(mask == 0, 0), mask


def hf_new_tokens(ref, ids, mask, **kwargs) -> list[list[int]]:
    with torch.no_grad():
        out = ref.generate(input_ids=ids, attention_mask=mask, pad_token_id=0, eos_token_id=2, **kwargs)
    return out[:, ids.shape[1]:].tolist()


def ours_new_tokens(result) -> list[list[int]]:
    return [row[:n] for row, n in zip(result.sequences.tolist(), result.lengths)]


def strip_pad(rows: list[list[int]], lengths: list[int]) -> list[list[int]]:
    return [row[:n] for row, n in zip(rows, lengths)]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_batched_greedy_matches_transformers(kind, tmp_path):
    ref = tiny_hf(kind, tmp_path / kind)
    model = pf.load(tmp_path / kind)
    ids, mask = left_padded()
    result = generate(model, ids, mask, GenerationConfig(max_new_tokens=12, eos_token_id=2))
    expected = hf_new_tokens(ref, ids, mask, do_sample=False, max_new_tokens=12)
    assert strip_pad(expected, result.lengths) == ours_new_tokens(result)
    assert all(r in ("stop", "length") for r in result.finish_reasons)
    assert result.logprobs.shape == result.sequences.shape
    assert (result.logprobs <= 0).all()


# ---- text: stop strings and streaming ---------------------------------------------------------

CORPUS = ["héllo wörld, café crème", "naïve façade déjà vu", "plain ascii words here", "more plain words and words"] * 3
TEXT = "café 🎉 naïve 🦜 déjà vu STOP après 🎉"


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(CORPUS, vocab_size=300)


def test_cut_at_stop_takes_the_earliest_string():
    assert cut_at_stop("abc STOP def END", ["END", "STOP"]) == ("abc ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)


def test_streamer_never_splits_a_character(tokenizer):
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    assert tokenizer.decode(ids) == TEXT
    assert any("\ufffd" in tokenizer.decode(ids[: i + 1]) for i in range(len(ids)))  # an emoji spans tokens
    streamer = TextStreamer(tokenizer)
    pieces = [streamer.push(i) for i in ids] + [streamer.flush()]
    assert "".join(pieces) == TEXT
    assert not any("\ufffd" in piece for piece in pieces)


@pytest.mark.parametrize("stop", ["STOP", "🦜", " vu S", "ve 🦜 d"])
def test_streamer_cuts_exactly_at_a_stop_string_across_tokens(tokenizer, stop):
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    streamer = TextStreamer(tokenizer, [stop, "never"])
    pieces = []
    for i in ids:
        pieces.append(streamer.push(i))
        if streamer.stopped:
            break
    pieces.append(streamer.flush())
    assert streamer.stopped
    assert "".join(pieces) == TEXT[: TEXT.index(stop)] == streamer.text()


def test_stream_text_equals_generate_text_and_stops_exactly(tokenizer):
    torch.manual_seed(0)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=tokenizer.vocab_size)).eval()
    prompts = ["café crème", "plain words and"]
    config = {"max_new_tokens": 16, "eos_token_id": tokenizer.vocab_size - 1, "temperature": 1.0, "seed": 3}
    full = generate_text(model, tokenizer, prompts, GenerationConfig(**config))
    assert [c.finish_reason for c in full] == ["length", "length"]
    text = full[0].text
    stop = next(text[i : i + 2] for i in range(3, len(text) - 1) if "\ufffd" not in text[i : i + 2])
    cut = generate_text(model, tokenizer, prompts, GenerationConfig(stop=[stop], **config))
    assert cut[0].text == full[0].text[: full[0].text.index(stop)] and cut[0].finish_reason == "stop"
    assert len(cut[0].token_ids) < len(full[0].token_ids)
    streamed = ["", ""]
    for row, piece in stream_text(model, tokenizer, prompts, GenerationConfig(stop=[stop], **config)):
        streamed[row] += piece
    assert streamed == [c.text for c in cut]


def test_bad_requests_raise_typed_errors(tokenizer):
    model = PolyformerModel(preset("gpt-tiny", vocab_size=64, max_positions=16)).eval()
    with pytest.raises(DataError, match="empty prompt"):
        generate(model, torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(DataError, match="empty prompt"):
        generate(model, torch.zeros(2, 3, dtype=torch.long), torch.tensor([[1, 1, 1], [0, 0, 0]]))
    with pytest.raises(ConfigError, match="context"):
        generate(model, torch.zeros(1, 10, dtype=torch.long), None, GenerationConfig(max_new_tokens=10))
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), None, GenerationConfig(eos_token_id=500))
    with pytest.raises(DataError, match="prompts"):
        generate_text(model, tokenizer, [""], GenerationConfig())
    with pytest.raises(DataError, match=r"rows \[1\]: decoder prompts must be left-padded"):
        generate(model, torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 1], [1, 1, 0]]))
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ConfigError, match="num_return_sequences=2 with greedy"):
        GenerationConfig(num_return_sequences=2)


def flat(completions) -> list:
    return [candidate for completion in completions for candidate in completion.candidates]


def test_text_beams_are_the_token_level_n_best_cut_at_stop_strings(tokenizer):
    """n-best from text: the beam hypotheses in score order; stop strings cut them after the search."""
    torch.manual_seed(0)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=tokenizer.vocab_size)).eval()
    perturb(model)
    prompts = ["café crème", "plain words and"]
    config = {"max_new_tokens": 12, "num_beams": 4, "num_return_sequences": 3, "eos_token_id": tokenizer.vocab_size - 1}
    completions = generate_text(model, tokenizer, prompts, GenerationConfig(**config))
    tokens = generate(model, *encode_prompts(model, tokenizer, prompts), GenerationConfig(**config))
    assert [len(c.candidates) for c in completions] == [3, 3]
    candidates = flat(completions)
    assert [c.token_ids for c in candidates] == ours_new_tokens(tokens)
    assert [c.text for c in candidates] == [tokenizer.decode(c.token_ids) for c in candidates]
    scores = [[c.score for c in completion.candidates] for completion in completions]
    assert all(row == sorted(row, reverse=True) and len(set(row)) == 3 for row in scores)
    assert torch.allclose(torch.tensor(scores).flatten(), tokens.scores)
    assert completions[1].text == completions[1].candidates[0].text and completions[1].score == scores[1][0]
    text = completions[0].candidates[1].text
    stop = next(text[i : i + 2] for i in range(3, len(text) - 1) if "\ufffd" not in text[i : i + 2])
    cut = flat(generate_text(model, tokenizer, prompts, GenerationConfig(stop=[stop], **config)))
    assert sum(stop in c.text for c in candidates) >= 1
    for whole, part in zip(candidates, cut):
        if stop in whole.text:
            assert part.text == whole.text[: whole.text.index(stop)] and part.finish_reason == "stop"
            assert part.token_ids == whole.token_ids[: len(part.token_ids)] and stop in tokenizer.decode(part.token_ids)
            assert stop not in tokenizer.decode(part.token_ids[:-1])  # ends at the token that completes the stop
        else:
            assert part == whole


def test_text_samples_are_independent_seeded_draws(tokenizer):
    torch.manual_seed(0)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=tokenizer.vocab_size)).eval()
    prompts = ["café crème", "plain words and"]
    config = {"max_new_tokens": 10, "temperature": 1.0, "num_return_sequences": 3}
    samples = flat(generate_text(model, tokenizer, prompts, GenerationConfig(seed=5, **config)))
    tokens = generate(model, *encode_prompts(model, tokenizer, prompts), GenerationConfig(seed=5, **config))
    assert [c.token_ids for c in samples] == ours_new_tokens(tokens)  # the same draws as token level
    assert len({c.text for c in samples[:3]}) == 3 and len({c.text for c in samples[3:]}) == 3
    assert all(c.score is None for c in samples)
    assert samples == flat(generate_text(model, tokenizer, prompts, GenerationConfig(seed=5, **config)))
    assert samples != flat(generate_text(model, tokenizer, prompts, GenerationConfig(seed=6, **config)))


# ---- beam search -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_pair(tmp_path_factory):
    """A random-init transformers GPT-2 and the same weights loaded into polyformer."""
    directory = tmp_path_factory.mktemp("gpt2")
    return tiny_hf("gpt2", directory), pf.load(directory)


# eos ids chosen so that hypotheses end at different lengths (the model repeats a few tokens)
@pytest.mark.parametrize("early_stopping, eos", [(True, 58), (True, 66), (False, 66), (False, 2)])
def test_beam_search_matches_transformers(gpt2_pair, early_stopping, eos):
    ref, model = gpt2_pair
    torch.manual_seed(5)
    ids = torch.randint(3, VOCAB, (1, 5))
    kwargs = {"num_beams": 4, "length_penalty": 1.0, "early_stopping": early_stopping, "max_new_tokens": 10}
    with torch.no_grad():
        expected = ref.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pad_token_id=0, eos_token_id=eos,
                                do_sample=False, num_return_sequences=4, **kwargs)[:, 5:].tolist()
    result = generate(model, ids, None, GenerationConfig(eos_token_id=eos, num_return_sequences=4, **kwargs))
    assert strip_pad(expected, result.lengths) == ours_new_tokens(result)
    ended = [row.index(eos) + 1 if eos in row else len(row) for row in expected]
    assert ended == result.lengths
    assert result.scores is not None and (result.scores[:-1] >= result.scores[1:]).all()


@pytest.mark.parametrize("num_beams", [1, 4])
@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_left_padded_batch_equals_each_prompt_alone(name, num_beams):
    """Per-row finishing: row 0 meets EOS at once while row 1 goes on, each as if it ran alone."""
    torch.manual_seed(0)
    model = PolyformerModel(preset(name, vocab_size=64)).eval()
    with torch.no_grad():  # larger weights: varied, prompt- and position-dependent outputs
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.2)
    torch.manual_seed(1)
    ids = torch.randint(1, 64, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    rows = [ids[i : i + 1, mask[i].bool()] for i in range(2)]
    eos = generate(model, rows[0], None, GenerationConfig(max_new_tokens=1)).sequences[0, 0].item()
    config = GenerationConfig(max_new_tokens=8, num_beams=num_beams, eos_token_id=eos)
    alone = [generate(model, row, None, config) for row in rows]
    batched = generate(model, ids.masked_fill(mask == 0, 0), mask, config)
    assert ours_new_tokens(batched) == [ours_new_tokens(a)[0] for a in alone]
    assert batched.lengths[0] == 1 and batched.finish_reasons[0] == "stop" and batched.lengths[1] > 1
    assert (batched.sequences[0, 1:] == eos).all()  # finished rows are padded (pad = EOS here)


# ---- encoder–decoder (Marian) ------------------------------------------------------------------

MARIAN_VOCAB, MARIAN_PAD = 101, 100


def tiny_marian(directory, weight_std: float | None = None):
    """A random-init transformers Marian model (EOS 0, start = pad = 100), saved to `directory`.

    Its weights are perturbed by N(0, 0.05) noise, or with `weight_std` redrawn from N(0, weight_std).
    """
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=MARIAN_VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
        pad_token_id=MARIAN_PAD, decoder_start_token_id=MARIAN_PAD, eos_token_id=0, forced_eos_token_id=None,
    )
    ref = transformers.MarianMTModel(config).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for param in ref.parameters():
            if not param.requires_grad:  # the fixed sinusoid tables
                continue
            if weight_std is None:
                param.add_(torch.randn_like(param) * 0.05)
            elif param.dim() > 1:
                param.normal_(0, weight_std)
    ref.save_pretrained(directory)
    return ref


@pytest.fixture(scope="module")
def marian_pair(tmp_path_factory):
    """The tiny Marian and its polyformer twin."""
    directory = tmp_path_factory.mktemp("marian")
    return tiny_marian(directory), pf.load(directory)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_encoder_decoder_generation_matches_transformers(marian_pair, num_beams):
    ref, model = marian_pair
    torch.manual_seed(1)
    src = torch.randint(1, MARIAN_PAD, (2, 7))
    mask = torch.ones_like(src)
    mask[1, 4:] = 0  # sources are right-padded
    src = src.masked_fill(mask == 0, MARIAN_PAD)
    if num_beams > 1:
        src, mask = src[:1], mask[:1]
    kwargs = {"num_beams": num_beams, "max_new_tokens": 10}
    if num_beams > 1:
        kwargs.update(length_penalty=1.0, early_stopping=True)
    with torch.no_grad():
        expected = ref.generate(input_ids=src, attention_mask=mask, do_sample=False, **kwargs)[:, 1:].tolist()
    result = generate(model, src, mask, GenerationConfig(**kwargs))
    assert strip_pad(expected, result.lengths) == ours_new_tokens(result)
    assert result.finish_reasons == ["stop"] * src.shape[0]  # EOS (0) reached before the limit


MARIAN_SOURCES = ["the cat sat on the mat", "a dog", "a cat ran in the park"]


@pytest.fixture(scope="module")
def marian_varied(tmp_path_factory):
    """The tiny Marian with larger weights, so its outputs depend on the source tokens and their positions."""
    directory = tmp_path_factory.mktemp("marian-varied")
    return tiny_marian(directory, weight_std=0.1), pf.load(directory)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_encoder_decoder_text_batch_equals_each_source_alone_and_transformers(marian_varied, num_beams):
    """Sources of different lengths from text: padded after their tokens, so each encodes as if alone."""
    ref, model = marian_varied
    chars = CharTokenizer([chr(code) for code in range(32, 32 + MARIAN_VOCAB)])  # one character per id; EOS 0 is " "
    kwargs = {"num_beams": num_beams, "max_new_tokens": 10}
    if num_beams > 1:
        kwargs.update(length_penalty=1.0, early_stopping=True, num_return_sequences=2)
    config = GenerationConfig(**kwargs)
    batched = flat(generate_text(model, chars, MARIAN_SOURCES, config))
    alone = [c for source in MARIAN_SOURCES for c in flat(generate_text(model, chars, [source], config))]
    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
    rows = [chars.encode(source) for source in MARIAN_SOURCES]
    width = max(map(len, rows))
    src = torch.tensor([row + [MARIAN_PAD] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    with torch.no_grad():
        expected = ref.generate(input_ids=src, attention_mask=mask, do_sample=False, **kwargs)[:, 1:].tolist()
    assert strip_pad(expected, [len(c.token_ids) for c in batched]) == [c.token_ids for c in batched]
    with pytest.raises(DataError, match=r"rows \[1, 2\]: encoder-decoder sources must be right-padded"):
        generate(model, src.flip(-1), mask.flip(-1), config)  # padding before the second source


def test_stream_yields_the_generated_tokens_and_min_new_tokens_holds_back_eos():
    torch.manual_seed(0)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=64)).eval()
    prompt = torch.randint(0, 64, (2, 4))
    config = GenerationConfig(max_new_tokens=6)
    steps = []
    for tokens in stream(model, prompt, None, config):
        assert not torch.is_inference_mode_enabled()  # the caller's code between steps is unaffected
        steps.append(tokens)
    streamed = torch.stack(steps, dim=1)  # (B, steps)
    assert torch.equal(streamed, generate(model, prompt, None, config).sequences)
    eos = int(streamed[0, 0])  # what row 0 says first
    assert generate(model, prompt[:1], None, GenerationConfig(max_new_tokens=6, eos_token_id=eos)).lengths == [1]
    held = generate(model, prompt[:1], None, GenerationConfig(max_new_tokens=6, min_new_tokens=3, eos_token_id=eos))
    assert held.lengths[0] >= 4
    assert eos not in held.sequences[0, :3].tolist()
