"""Generation: sampling processors, batched and streamed decoding, beam search, text (stop strings, streaming, n-best)."""

from polyformer.generation.beam import beam_search
from polyformer.generation.decoding import generate, stream
from polyformer.generation.engine import GenerationOutput, Step, TokenStream
from polyformer.generation.settings import GenerationConfig, make_config
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
    "make_config",
    "stream",
    "stream_text",
]
