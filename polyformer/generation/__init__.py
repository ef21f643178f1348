"""Generation: decoding loops over the models' KV caches."""

from polyformer.generation.greedy import greedy_tokens

__all__ = ["greedy_tokens"]
