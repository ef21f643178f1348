"""Greedy and plain sampled decoding through `model.generate` agree with arg-max over full (uncached) forwards."""

from __future__ import annotations

import pytest
import torch

from polyformer.config import preset
from polyformer.errors import ConfigError
from polyformer.models import PolyformerModel


def new_tokens(model, prompt, max_new_tokens, **options) -> list[int]:
    """The tokens `model.generate` gives one prompt (1, T)."""
    out = model.generate(prompt, max_new_tokens=max_new_tokens, **options)
    return out.sequences[0, : out.lengths[0]].tolist()


def uncached_greedy(model, ids, steps):
    out = []
    for _ in range(steps):
        token = int(model(ids).logits[0, -1].argmax())
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_cached_greedy_equals_uncached(name):
    torch.manual_seed(0)
    model = PolyformerModel(preset(name, vocab_size=64)).eval()
    prompt = torch.randint(0, 64, (1, 5))
    with torch.no_grad():
        assert new_tokens(model, prompt, 12) == uncached_greedy(model, prompt, 12)


def test_encoder_decoder_greedy_equals_uncached():
    torch.manual_seed(0)
    model = PolyformerModel(preset("transformer-small", vocab_size=64)).eval()
    src = torch.randint(2, 64, (1, 6))
    got = new_tokens(model, src, 8)
    target = torch.tensor([[model.config.decoder_start_token_id]])
    expected = []
    with torch.no_grad():
        for _ in range(8):
            token = int(model(src, decoder_input_ids=target).logits[0, -1].argmax())
            expected.append(token)
            target = torch.cat([target, torch.tensor([[token]])], dim=1)
    assert got == expected[: len(got)]  # the same tokens, up to the model's EOS (included) when it comes first
    assert len(got) == 8 or got[-1] == model.config.eos_token_id


def test_greedy_rejects_bad_requests():
    model = PolyformerModel(preset("gpt-tiny", vocab_size=64, max_positions=8)).eval()
    with pytest.raises(ConfigError, match="max_new_tokens"):
        new_tokens(model, torch.zeros(1, 3, dtype=torch.long), 0)
    with pytest.raises(ConfigError, match="context"):
        new_tokens(model, torch.zeros(1, 6, dtype=torch.long), 5)
    encoder = PolyformerModel(preset("bert-tiny", vocab_size=64)).eval()
    with pytest.raises(ConfigError, match="LM head"):
        new_tokens(encoder, torch.zeros(1, 3, dtype=torch.long), 2)


def test_sampling_is_seeded_and_follows_temperature():
    torch.manual_seed(0)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=64)).eval()
    prompt = torch.randint(0, 64, (1, 4))
    first = new_tokens(model, prompt, 10, temperature=1.0, seed=7)
    assert first == new_tokens(model, prompt, 10, temperature=1.0, seed=7)
    assert first != new_tokens(model, prompt, 10, temperature=1.0, seed=8)
    # a tiny temperature is greedy
    assert new_tokens(model, prompt, 10, temperature=1e-6, seed=1) == new_tokens(model, prompt, 10)
    with pytest.raises(ConfigError, match="temperature"):
        new_tokens(model, prompt, 2, temperature=-1.0)
