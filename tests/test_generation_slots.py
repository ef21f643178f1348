"""Continuous-batching steps (`SlotSteps` over a `SlotKVCache`): rows of different lengths that
join and leave between steps decode exactly what `generate` gives each prompt alone.

Decoders with learned positions (GPT-2 layout) and rotary GQA (Llama layout), and an
encoder–decoder (Marian layout, per-row sources of different lengths) are checked; the cache
starts small so it must grow while rows are running.
"""

from __future__ import annotations

import pytest
import torch

from test_generate import one_thread  # noqa: F401 - tiny models decode fastest on one thread

from polyformer.config import preset
from polyformer.core.cache import SlotKVCache
from polyformer.errors import ConfigError
from polyformer.generation import GenerationConfig, generate
from polyformer.generation.slots import SlotSteps
from polyformer.models import PolyformerModel

VOCAB = 300
NEW = 10
CONFIGS = {
    "gpt": ("gpt-tiny", dict(vocab_size=VOCAB, max_positions=96, hidden_size=64, num_layers=2)),
    "llama": ("llama-tiny", dict(vocab_size=VOCAB, hidden_size=64, num_layers=2, intermediate_size=128)),
    "marian": ("transformer-small", dict(vocab_size=VOCAB, hidden_size=64, num_layers=2, intermediate_size=128)),
}


def random_model(kind: str) -> PolyformerModel:
    name, overrides = CONFIGS[kind]
    torch.manual_seed(0)
    model = PolyformerModel(preset(name, **overrides)).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.1)  # larger weights than the initialisation: varied, decisive outputs
    return model


def alone(model: PolyformerModel, prompt: list[int]) -> list[int]:
    out = generate(model, torch.tensor([prompt]), None, GenerationConfig(max_new_tokens=NEW, eos_token_id=[]))
    return out.sequences[0].tolist()


def continuous(model: PolyformerModel, prompts: list[list[int]], joins: list[int], slots: int) -> list[list[int]]:
    """Greedy tokens per prompt; prompt i joins at step joins[i] (when a slot is free) and leaves after NEW tokens."""
    steps = SlotSteps(model, slots, capacity=4)
    waiting = list(range(len(prompts)))
    running: dict[int, int] = {}  # slot -> prompt
    out: list[list[int]] = [[] for _ in prompts]
    step = 0
    while waiting or running:
        for index in [i for i in waiting if joins[i] <= step]:
            slot = steps.acquire()
            if slot is None:
                break
            waiting.remove(index)
            out[index].append(int(steps.prefill(slot, prompts[index]).argmax()))
            running[slot] = index
        busy = sorted(running)
        if busy:
            logits = steps.step(busy, [out[running[s]][-1] for s in busy])
            for slot, row in zip(busy, logits):
                out[running[slot]].append(int(row.argmax()))
        for slot in [s for s in busy if len(out[running[s]]) >= NEW]:
            steps.release(slot)
            del running[slot]
        step += 1
    return [row[:NEW] for row in out]


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_rows_joining_and_leaving_decode_as_if_alone(kind):
    model = random_model(kind)
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, VOCAB, (n,), generator=generator).tolist() for n in (5, 11, 3, 8, 6)]
    expected = [alone(model, p) for p in prompts]
    assert len({tuple(e) for e in expected}) > 1  # the prompts really decode differently
    # three slots for five prompts: later prompts wait for a finished row's slot, holes appear below busy slots
    assert continuous(model, prompts, joins=[0, 2, 3, 4, 4], slots=3) == expected


def test_slot_cache_grows_keeps_rows_and_refuses_past_its_limit():
    cache = SlotKVCache(num_layers=1, slots=2, kv_heads=1, head_dim=2, max_length=10, capacity=2)
    row = cache.row(1)
    key = torch.arange(4.0).view(1, 1, 2, 2)
    assert row.update(0, key, key)[0] is key  # a prefill sees exactly its own keys
    cache.reserve(5)
    assert cache.capacity == 5 and torch.equal(cache.keys[0][1, :, :2], key[0])
    cache.reserve(10)
    with pytest.raises(ConfigError, match="holds 10 positions; 11"):
        cache.reserve(11)


def test_slot_steps_need_a_generative_model():
    encoder = PolyformerModel(preset("bert-tiny", vocab_size=50, hidden_size=32, num_layers=1, num_heads=2,
                                     intermediate_size=64))
    with pytest.raises(ConfigError, match="decoder or encoder-decoder"):
        SlotSteps(encoder, 2)
