"""Logits processors on known distributions, seeded choice, and GenerationConfig validation."""

from __future__ import annotations

import math

import pytest
import torch

from polyformer.config import preset
from polyformer.errors import ConfigError
from polyformer.generation import GenerationConfig, generate, make_config
from polyformer.generation.sampling import (
    add_logit_bias,
    choose_tokens,
    make_generator,
    min_p_filter,
    presence_frequency_penalty,
    repetition_penalty,
    token_counts,
    top_k_filter,
    top_p_filter,
)
from polyformer.models import PolyformerModel

PROBS = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])  # sorted: 1 (.4), 3 (.3), 4 (.15), 2 (.1), 0 (.05)
LOGITS = PROBS.log()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models decode fastest on one thread, and a busy shared machine cannot stall them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def support(logits: torch.Tensor) -> set[int]:
    return set(torch.isfinite(logits[0]).nonzero().flatten().tolist())


def test_top_k_keeps_the_k_most_likely():
    assert support(top_k_filter(LOGITS, 2)) == {1, 3}
    assert support(top_k_filter(LOGITS, 1)) == {1}
    assert support(top_k_filter(LOGITS, 0)) == set(range(5))


@pytest.mark.parametrize("p, expected", [(0.39, {1}), (0.41, {1, 3}), (0.69, {1, 3}), (0.71, {1, 3, 4}), (0.9, {1, 3, 4, 2}), (0.96, set(range(5)))])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    assert support(top_p_filter(LOGITS, p)) == expected


def test_min_p_keeps_tokens_above_a_fraction_of_the_best():
    assert support(min_p_filter(LOGITS, 0.5)) == {1, 3}  # threshold 0.2
    assert support(min_p_filter(LOGITS, 0.3)) == {1, 3, 4}  # threshold 0.12
    assert support(min_p_filter(LOGITS, 0.2)) == {1, 3, 4, 2}  # threshold 0.08


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    logits = torch.tensor([[2.0, -1.0, 3.0, -4.0]])
    counts = token_counts(torch.tensor([[0, 1, 1]]), 4)
    assert counts.tolist() == [[1, 2, 0, 0]]
    assert repetition_penalty(logits, counts, 2.0).tolist() == [[1.0, -2.0, 3.0, -4.0]]


def test_presence_frequency_penalty_and_logit_bias():
    logits = torch.zeros(1, 4)
    counts = torch.tensor([[0, 1, 3, 0]])
    out = presence_frequency_penalty(logits, counts, presence=0.5, frequency=0.25)
    assert out.tolist() == [[0.0, -0.75, -1.25, 0.0]]
    assert add_logit_bias(logits, {3: 5.0, 0: -1.0}).tolist() == [[-1.0, 0.0, 0.0, 5.0]]
    with pytest.raises(ConfigError, match="logit_bias"):
        add_logit_bias(logits, {9: 1.0})


def test_token_counts_ignore_padding():
    counts = token_counts(torch.tensor([[0, 0, 2]]), 3, mask=torch.tensor([[0, 1, 1]]))
    assert counts.tolist() == [[1, 0, 1]]


def test_seeded_choice_is_reproducible_and_follows_the_distribution():
    logits = LOGITS.expand(4000, -1)
    first = choose_tokens(logits, greedy=False, generator=make_generator(3))
    assert torch.equal(first, choose_tokens(logits, greedy=False, generator=make_generator(3)))
    assert not torch.equal(first, choose_tokens(logits, greedy=False, generator=make_generator(4)))
    freq = torch.bincount(first, minlength=5).float() / 4000
    assert torch.allclose(freq, PROBS[0], atol=0.03)
    assert choose_tokens(LOGITS, greedy=True).tolist() == [1]


def test_sampled_generation_same_seed_same_tokens():
    torch.manual_seed(0)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=64)).eval()
    prompt = torch.randint(0, 64, (2, 4))
    config = {"max_new_tokens": 10, "temperature": 1.0, "top_k": 20, "top_p": 0.95}
    a = generate(model, prompt, None, make_config(seed=7, **config)).sequences
    b = generate(model, prompt, None, make_config(seed=7, **config)).sequences
    c = generate(model, prompt, None, make_config(seed=8, **config)).sequences
    assert torch.equal(a, b) and not torch.equal(a, c)
    several = generate(model, prompt, None, make_config(seed=7, num_return_sequences=3, **config)).sequences
    assert several.shape == (6, 10) and not torch.equal(several[0], several[1])  # grouped by prompt


@pytest.mark.parametrize("field, value", [
    ("max_new_tokens", 0), ("max_new_tokens", -3), ("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5),
    ("top_k", -1), ("min_p", 2.0), ("repetition_penalty", 0.0), ("num_beams", 0), ("temperature", float("nan")),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        make_config(**{field: value})


def test_config_defaults_are_valid():
    config = make_config(stop="###", eos_token_id=[2, 3])
    assert config.stopping.stop == ["###"] and config.stopping.eos_ids() == [2, 3] and config.sampling.greedy
    assert math.isclose(make_config(top_p=1.0).sampling.top_p, 1.0)
