"""Training WordPiece (BERT-style) and byte-level BPE (GPT-2-style) vocabularies on a corpus.

The `tokenizers` trainers do the counting and merging; this module assembles the pipeline
around them (`pipelines.py`) and streams the corpus to them: texts are yielded one at a time
and files are read line by line, so a corpus never has to fit in memory.

Training is repeatable: the same corpus gives the same vocabulary in every process. The
WordPiece trainer on its own is not — it numbers the `##x` tokens in hash-map order, which
changes from process to process and breaks ties between merges differently
(huggingface/tokenizers#1794) — so `train_wordpiece` reads the corpus once more first and names
those tokens itself, sorted, right after the special tokens. (A corpus given as a one-shot
iterator is kept in memory for the second reading.)

A corpus is given as either
- a path (`str` or `Path`) to one text file,
- an iterable of texts (`str`) and/or files (`Path`), e.g. a list of strings, a generator, or
  `[Path("a.txt"), Path("b.txt")]`. (Inside an iterable a `str` is a text, never a path.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer as Backend
from tokenizers import pre_tokenizers, trainers
from tokenizers.models import BPE, WordPiece

from polyformer.errors import TokenizerError
from polyformer.tokenizers.pipelines import BertOptions, bert_pipeline, byte_level_pipeline, template_processor
from polyformer.tokenizers.special import BERT_SPECIAL_TOKENS, GPT2_END_OF_TEXT, SpecialTokens, infer_special_tokens
from polyformer.tokenizers.tokenizer import Tokenizer

Corpus = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def train_wordpiece(
    corpus: Corpus,
    vocab_size: int,
    *,
    lowercase: bool = True,
    min_frequency: int = 2,
    special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS,
    model_max_length: int | None = 512,
) -> Tokenizer:
    """A BERT WordPiece tokenizer learnt from `corpus`; special tokens take the first ids, in order."""
    specials = _check(vocab_size, min_frequency, special_tokens)
    roles = infer_special_tokens(specials)
    unk = roles.unk or "[UNK]"
    if unk not in specials:
        specials = [*specials, unk]
    options = BertOptions(lowercase=lowercase, cls_token=roles.cls or "[CLS]", sep_token=roles.sep or "[SEP]")
    backend = bert_pipeline(WordPiece(unk_token=unk, max_input_chars_per_word=100), options)
    corpus = list(corpus) if isinstance(corpus, Iterator) else corpus  # read twice below
    subwords = _continuing_subwords(backend, _texts(corpus), "##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[*specials, *subwords],
        continuing_subword_prefix="##", show_progress=False,
    )
    backend.train_from_iterator(_texts(corpus), trainer=trainer)
    trained = bert_pipeline(backend.model, options)  # post-processor needs the trained [CLS]/[SEP] ids
    return Tokenizer(trained, _with_extra(roles, specials), model_max_length=model_max_length,
                     token_type_ids=roles.cls is not None and roles.sep is not None)


def train_bpe(
    corpus: Corpus,
    vocab_size: int,
    *,
    min_frequency: int = 2,
    special_tokens: Sequence[str] = (GPT2_END_OF_TEXT,),
    model_max_length: int | None = None,
) -> Tokenizer:
    """A GPT-2-style byte-level BPE tokenizer learnt from `corpus` (all 256 bytes always in the vocabulary)."""
    specials = _check(vocab_size, min_frequency, special_tokens)
    backend = byte_level_pipeline(BPE(fuse_unk=False))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(_texts(corpus), trainer=trainer)
    backend.post_processor = template_processor(backend, None, None)
    return Tokenizer(backend, _with_extra(infer_special_tokens(specials), specials), model_max_length=model_max_length)


def _check(vocab_size: int, min_frequency: int, special_tokens: Sequence[str]) -> list[str]:
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise TokenizerError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if not isinstance(min_frequency, int) or min_frequency < 0:
        raise TokenizerError(f"min_frequency must be a non-negative int, got {min_frequency!r}")
    if isinstance(special_tokens, str) or not all(isinstance(t, str) and t for t in special_tokens):
        raise TokenizerError("special_tokens must be a list of non-empty strings")
    return list(dict.fromkeys(special_tokens))


def _continuing_subwords(backend: Backend, texts: Iterable[str], prefix: str) -> list[str]:
    """`prefix + c` for every character that follows another inside a word of `texts`, sorted.

    Words are what the trainer sees: the backend's normaliser, then its pre-tokenizer. Given to
    the trainer as (provisional) special tokens, these get fixed ids before training starts; the
    pipeline rebuilt from the trained model does not keep them special.
    """
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    inner: set[str] = set()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            inner.update(word[1:])
    return [prefix + char for char in sorted(inner)]


def _with_extra(roles: SpecialTokens, specials: list[str]) -> SpecialTokens:
    """`roles` plus the special tokens that fill no role, so they stay special."""
    named = set(roles.named().values())
    return SpecialTokens(**roles.named(), extra=tuple(t for t in specials if t not in named))


def _texts(corpus: Corpus) -> Iterator[str]:
    """Stream the corpus: texts as they come, files line by line."""
    if isinstance(corpus, (str, os.PathLike)):
        yield from _file_lines(Path(corpus))
        return
    if not isinstance(corpus, Iterable):
        raise TokenizerError(f"corpus must be a path or an iterable of texts/paths, got {type(corpus).__name__}")
    for index, item in enumerate(corpus):
        if isinstance(item, str):
            yield item
        elif isinstance(item, os.PathLike):
            yield from _file_lines(Path(item))
        else:
            raise TokenizerError(f"corpus[{index}] is {type(item).__name__}, expected str (a text) or Path (a file)")


def _file_lines(file: Path) -> Iterator[str]:
    if not file.is_file():
        raise TokenizerError(f"{file}: corpus file not found")
    with file.open(encoding="utf-8", errors="replace") as handle:
        yield from handle
