"""Greedy decoding and plain temperature sampling with a KV cache: the loop the generation engine builds on.

Prefill the prompt once, then feed one token at a time, taking the arg-max of the last logits
(temperature 0) or a draw from softmax(logits / temperature) with a seeded generator.
Works for decoders (GPT-2, Llama) and encoder–decoders (the encoder runs once).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from polyformer.core import KVCache
from polyformer.errors import ConfigError

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel


@torch.inference_mode()
def greedy_tokens(
    model: PolyformerModel,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | None = None,
    temperature: float = 0.0,
    seed: int | None = None,
) -> Iterator[int]:
    """Yield new token ids for one prompt (1, T) until max_new_tokens or EOS (included).

    temperature 0 is greedy; above 0, tokens are sampled (reproducibly when `seed` is given).
    """
    if model.config.head != "lm":
        raise ConfigError(f"greedy decoding needs a model with an LM head, this one has head={model.config.head!r}")
    if max_new_tokens <= 0:
        raise ConfigError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    generator = torch.Generator(device=input_ids.device)
    if seed is not None:
        generator.manual_seed(seed)
    choose = lambda logits: _choose(logits, temperature, generator)  # noqa: E731
    if input_ids.shape[1] + max_new_tokens > model.config.max_positions and model.config.position == "learned":
        raise ConfigError(
            f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"model's context of {model.config.max_positions} positions"
        )
    cache = KVCache()
    if model.config.arch == "encoder-decoder":
        start = model.config.decoder_start_token_id or 0
        step_ids = torch.tensor([[start]], device=input_ids.device)
        memory = None
        for _ in range(max_new_tokens):
            out = model(input_ids, decoder_input_ids=step_ids, cache=cache, encoder_hidden_states=memory)
            memory = out.encoder_last_hidden_state
            token = choose(out.logits[0, -1])
            yield token
            if token == eos_token_id:
                return
            step_ids = torch.tensor([[token]], device=input_ids.device)
        return
    logits = model(input_ids, cache=cache).logits
    for _ in range(max_new_tokens):
        token = choose(logits[0, -1])
        yield token
        if token == eos_token_id:
            return
        logits = model(torch.tensor([[token]], device=input_ids.device), cache=cache).logits


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    """The next token from one position's logits (V,)."""
    if temperature == 0:
        return int(logits.argmax())
    probs = (logits.float() / temperature).softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))
