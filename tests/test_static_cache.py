"""The pre-allocated KV cache: same tokens as the dynamic cache and as uncached full forwards.

Greedy decoding of left-padded batches (and 4-beam search) on random-init transformers GPT-2,
Llama (GQA, rotary) and Marian models loaded into polyformer must give identical tokens whether
the keys/values live in a growing `KVCache`, in a `StaticKVCache` stepped with fixed shapes, or
are recomputed by a full forward over the whole sequence at every step.
"""

from __future__ import annotations

import pytest
import torch
from test_generate import MARIAN_PAD, VOCAB, left_padded, marian_pair, one_thread, ours_new_tokens, tiny_hf  # noqa: F401

import polyformer as pf
from polyformer.core import KVCache
from polyformer.core.cache import StaticKVCache
from polyformer.errors import ConfigError
from polyformer.generation import GenerationConfig, generate, make_config
from polyformer.generation.engine import TokenStream


def uncached_decoder_greedy(model, ids: torch.Tensor, mask: torch.Tensor, steps: int) -> list[list[int]]:
    """Arg-max of a full forward over prompt + tokens so far, every step (no cache at all)."""
    new = []
    with torch.no_grad():
        for _ in range(steps):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            token = model(ids, mask, position_ids=positions).logits[:, -1].argmax(-1)  # (B,)
            new.append(token)
            ids = torch.cat([ids, token[:, None]], 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return torch.stack(new, 1).tolist()


def uncached_seq2seq_greedy(model, src: torch.Tensor, mask: torch.Tensor, steps: int) -> list[list[int]]:
    target = torch.full((src.shape[0], 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        for _ in range(steps):
            token = model(src, mask, decoder_input_ids=target).logits[:, -1].argmax(-1)
            target = torch.cat([target, token[:, None]], 1)
    return target[:, 1:].tolist()


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def decoder(request, tmp_path_factory):
    """A random-init transformers GPT-2 / Llama (GQA, rotary) model loaded into polyformer."""
    directory = tmp_path_factory.mktemp(request.param)
    tiny_hf(request.param, directory)
    return pf.load(directory)


def prefixes(expected: list[list[int]], result) -> list[list[int]]:
    """The uncached rows cut where each generated row ended (EOS)."""
    return [row[:n] for row, n in zip(expected, result.lengths)]


def test_decoder_static_dynamic_and_uncached_agree(decoder):
    model = decoder
    ids, mask = left_padded()
    results = {cache: generate(model, ids, mask, make_config(max_new_tokens=12, cache=cache))
               for cache in ("dynamic", "static")}
    assert ours_new_tokens(results["static"]) == ours_new_tokens(results["dynamic"])
    assert torch.allclose(results["static"].logprobs, results["dynamic"].logprobs, atol=1e-5)
    expected = uncached_decoder_greedy(model, ids, mask, 12)
    assert prefixes(expected, results["static"]) == ours_new_tokens(results["static"])
    assert max(results["static"].lengths) > 1


def test_encoder_decoder_static_dynamic_and_uncached_agree(marian_pair):
    _, model = marian_pair
    torch.manual_seed(1)
    src = torch.randint(1, MARIAN_PAD, (2, 7))
    mask = torch.ones_like(src)
    mask[1, 4:] = 0
    src = src.masked_fill(mask == 0, MARIAN_PAD)
    static = generate(model, src, mask, make_config(max_new_tokens=10, cache="static"))
    dynamic = generate(model, src, mask, make_config(max_new_tokens=10, cache="dynamic"))
    assert ours_new_tokens(static) == ours_new_tokens(dynamic)
    assert prefixes(uncached_seq2seq_greedy(model, src, mask, 10), static) == ours_new_tokens(static)


def test_beam_search_with_a_static_cache(decoder):
    model = decoder
    ids, mask = left_padded()
    config = {"max_new_tokens": 8, "num_beams": 4, "num_return_sequences": 2, "eos_token_id": 2}
    static = generate(model, ids, mask, make_config(cache="static", **config))
    dynamic = generate(model, ids, mask, make_config(cache="dynamic", **config))
    assert ours_new_tokens(static) == ours_new_tokens(dynamic)
    assert torch.allclose(static.scores, dynamic.scores, atol=1e-5)


def test_static_cache_writes_in_place_and_returns_the_filled_prefix():
    cache, dynamic = StaticKVCache(2, 3, 2, 4, max_length=6), KVCache()
    addresses = [buffer.data_ptr() for buffer in cache.buffers()]
    for length in (3, 1, 2):
        key, value = torch.randn(3, 2, length, 4), torch.randn(3, 2, length, 4)
        for layer in range(2):
            got, want = cache.update(layer, key, value), dynamic.update(layer, key, value)
            assert all(torch.equal(g, w) for g, w in zip(got, want))
        assert cache.seq_length() == dynamic.seq_length()
    order = torch.tensor([2, 0, 1])
    cache.reorder(order)
    dynamic.reorder(order)
    assert torch.equal(cache.keys[1], dynamic._self[1][0])
    assert [buffer.data_ptr() for buffer in cache.buffers()] == addresses  # CUDA graphs need fixed addresses
    with pytest.raises(ConfigError, match="holds 6 positions"):
        cache.update(0, torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4))


def test_fixed_shape_mode_writes_at_the_index_and_returns_whole_buffers():
    cache = StaticKVCache(1, 2, 1, 4, max_length=5)
    cache.update(0, torch.ones(2, 1, 2, 4), torch.ones(2, 1, 2, 4))
    cache.write_index = torch.tensor([3])
    key, value = cache.update(0, torch.full((2, 1, 1, 4), 7.0), torch.full((2, 1, 1, 4), 8.0))
    assert key.shape == (2, 1, 5, 4)
    assert key[:, :, :, 0].tolist() == [[[1, 1, 0, 7, 0]]] * 2
    assert value[0, 0, 3, 0] == 8.0
    cache.advance(1)
    assert cache.seq_length() == 3


def test_auto_cache_is_dynamic_on_cpu_and_compile_needs_a_static_cache(decoder):
    model = decoder
    ids, mask = left_padded()
    assert isinstance(TokenStream(model, ids, mask, GenerationConfig()).cache, KVCache)
    assert isinstance(TokenStream(model, ids, mask, make_config(cache="static")).cache, StaticKVCache)
    with pytest.raises(ConfigError, match="static"):
        TokenStream(model, ids, mask, make_config(cache="dynamic", compile=True))
    with pytest.raises(ConfigError, match="cache must be one of"):
        make_config(cache="paged")


@pytest.mark.slow
def test_compiled_decode_step_matches_eager(tmp_path):
    """The fixed-shape step under torch.compile (inductor on CPU; a CUDA graph on GPU) gives the same tokens."""
    tiny_hf("llama", tmp_path / "llama")
    model = pf.load(tmp_path / "llama")
    ids, mask = left_padded()
    eager = generate(model, ids, mask, make_config(max_new_tokens=10, cache="static"))
    compiled = generate(model, ids, mask, make_config(max_new_tokens=10, cache="static", compile=True))
    assert ours_new_tokens(compiled) == ours_new_tokens(eager)
    assert VOCAB == model.config.vocab_size
