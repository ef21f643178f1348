"""Generation: sampling processors, batched and streamed decoding, beam search, text streaming."""

from polyformer.generation.engine import GenerationOutput, Step, TokenStream, generate, stream
from polyformer.generation.greedy import greedy_tokens
from polyformer.generation.sampling import GenerationConfig

__all__ = ["GenerationConfig", "GenerationOutput", "Step", "TokenStream", "generate", "greedy_tokens", "stream"]
