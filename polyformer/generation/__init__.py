"""Generation: sampling processors, batched and streamed decoding, beam search, text (stop strings, streaming, n-best)."""

from polyformer.generation.beam import beam_search
from polyformer.generation.engine import GenerationOutput, Step, TokenStream, generate, stream
from polyformer.generation.greedy import greedy_tokens
from polyformer.generation.sampling import GenerationConfig
from polyformer.generation.text import Candidate, TextCompletion, TextStreamer, cut_at_stop, generate_text, stream_text

__all__ = [
    "Candidate",
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
