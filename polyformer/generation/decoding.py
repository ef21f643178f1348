"""`generate` and `stream`: one batched request in, the decode loop it asks for run.

Greedy and sampled requests run the token stream (`engine.TokenStream`), num_return_sequences
samples repeating each prompt's row; `num_beams > 1` runs beam search (`beam.py`). `stream`
hands out each step's tokens as they are decoded. `PolyformerModel.generate` and the text layer
come here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from polyformer.generation.beam import beam_search
from polyformer.generation.engine import (
    GenerationOutput,
    TokenStream,
    check_padding,
    check_streamable,
    collect,
    repeat_rows,
)
from polyformer.generation.settings import GenerationConfig, make_config

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel


def stream(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
           config: GenerationConfig | None = None) -> Iterator[torch.Tensor]:
    """The new tokens (B,) step by step (padding for rows already finished); the request is checked now."""
    config = config or GenerationConfig()
    check_streamable(config)
    check_padding(model, attention_mask)
    token_stream = TokenStream(model, input_ids, attention_mask, config)
    return (step.tokens for step in token_stream)


def generate(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             config: GenerationConfig | None = None) -> GenerationOutput:
    """Generate for a batch; beam search when num_beams > 1.

    Decoder prompts are left-padded, encoder–decoder sources right-padded. Rows come grouped by
    prompt, num_return_sequences per prompt (the best beams, or independent samples).
    """
    config = config or GenerationConfig()
    check_padding(model, attention_mask)  # before rows are repeated, so errors name the caller's rows
    if config.beams.num_beams > 1:
        return beam_search(model, input_ids, attention_mask, config)
    input_ids, attention_mask = repeat_rows(input_ids, attention_mask, config.beams.num_return_sequences)
    token_stream = TokenStream(model, input_ids, attention_mask, config)
    return collect(token_stream, list(token_stream))


def generate_with_options(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          config: GenerationConfig | None = None, *, streaming: bool = False,
                          **options: Any) -> GenerationOutput | Iterator[torch.Tensor]:
    """`PolyformerModel.generate`: `options` (GenerationConfig fields, or `do_sample`) over `config`,
    then `generate`, or `stream` when streaming."""
    request = make_config(config, **options)
    if streaming:
        return stream(model, input_ids, attention_mask, request)
    return generate(model, input_ids, attention_mask, request)
