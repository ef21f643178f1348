"""Greedy decoding with a KV cache: the plain loop the full generation engine builds on.

Prefill the prompt once, then feed one token at a time, taking the arg-max of the last logits.
Works for decoders (GPT-2, Llama) and encoder–decoders (the encoder runs once).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from polyformer.core import KVCache
from polyformer.errors import ConfigError
from polyformer.models import PolyformerModel


@torch.inference_mode()
def greedy_tokens(
    model: PolyformerModel,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | None = None,
) -> Iterator[int]:
    """Yield new token ids for one prompt (1, T) until max_new_tokens or EOS (included)."""
    if model.config.head != "lm":
        raise ConfigError(f"greedy decoding needs a model with an LM head, this one has head={model.config.head!r}")
    if max_new_tokens <= 0:
        raise ConfigError(f"max_new_tokens must be positive, got {max_new_tokens}")
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
            token = int(out.logits[0, -1].argmax())
            yield token
            if token == eos_token_id:
                return
            step_ids = torch.tensor([[token]], device=input_ids.device)
        return
    logits = model(input_ids, cache=cache).logits
    for _ in range(max_new_tokens):
        token = int(logits[0, -1].argmax())
        yield token
        if token == eos_token_id:
            return
        logits = model(torch.tensor([[token]], device=input_ids.device), cache=cache).logits
