"""The one shared Transformer core: attention, MLP, norms, positions, block, stack, KV cache."""

from polyformer.core.attention import Attention, Mask, padding_mask, self_attention_mask
from polyformer.core.block import Block
from polyformer.core.cache import KVCache
from polyformer.core.embeddings import Embeddings
from polyformer.core.mlp import MLP
from polyformer.core.norms import RMSNorm, make_norm
from polyformer.core.stack import Stack

__all__ = [
    "Attention", "Block", "Embeddings", "KVCache", "MLP", "Mask", "RMSNorm", "Stack",
    "make_norm", "padding_mask", "self_attention_mask",
]
