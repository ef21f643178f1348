"""Tokenizers: load any supported layout, train new vocabularies, tokenise batches for models.

    tok = load_tokenizer("all-MiniLM-L6-v2")          # catalog name, directory, file or .gguf
    batch = tok(["a sentence", "another"])            # input_ids, attention_mask, ... as tensors
    tok.decode(batch["input_ids"][0])

Everything wraps the Hugging Face `tokenizers` library; see `tokenizer.py` for the interface,
`load.py` for the layouts read, `train.py` for training.
"""

from polyformer.tokenizers.char import CharTokenizer
from polyformer.tokenizers.gguf_vocab import GGUFVocab, build_gguf_tokenizer, load_gguf_tokenizer, read_gguf_vocab
from polyformer.tokenizers.load import load_tokenizer
from polyformer.tokenizers.special import BERT_SPECIAL_TOKENS, SpecialTokens
from polyformer.tokenizers.tokenizer import BatchEncoding, Tokenizer
from polyformer.tokenizers.train import train_bpe, train_wordpiece

__all__ = [
    "BERT_SPECIAL_TOKENS",
    "BatchEncoding",
    "CharTokenizer",
    "GGUFVocab",
    "SpecialTokens",
    "Tokenizer",
    "build_gguf_tokenizer",
    "load_gguf_tokenizer",
    "load_tokenizer",
    "read_gguf_vocab",
    "train_bpe",
    "train_wordpiece",
]
