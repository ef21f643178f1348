"""Generation: sampling processors, batched and streamed decoding, beam search, text streaming."""

from polyformer.generation.beam import beam_search
from polyformer.generation.engine import (
    GenerationOutput,
    Step,
    TextCompletion,
    TextStreamer,
    TokenStream,
    cut_at_stop,
    generate,
    generate_text,
    stream,
    stream_text,
)
from polyformer.generation.greedy import greedy_tokens
from polyformer.generation.sampling import GenerationConfig

__all__ = [
    "GenerationConfig",
    "GenerationOutput",
    "Step",
    "TextCompletion",
    "TextStreamer",
    "TokenStream",
    "beam_search",
    "cut_at_stop",
    "generate",
    "generate_text",
    "greedy_tokens",
    "stream",
    "stream_text",
]
