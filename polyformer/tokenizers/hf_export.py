"""What transformers needs beside `tokenizer.json` to load a saved tokenizer as its own class.

`AutoTokenizer` picks the class named by `tokenizer_class` in `tokenizer_config.json`. The generic
`PreTrainedTokenizerFast` runs `tokenizer.json` as it is, so it is right for every pipeline. A
BERT WordPiece pipeline is named `BertTokenizer` instead, the class BERT checkpoints ship with;
that class rebuilds its normaliser from the config's `do_lower_case` / `strip_accents` /
`tokenize_chinese_chars` (transformers 5 rebuilds the whole pipeline from the vocabulary), so
those switches are written as the backend has them and the class is chosen only when the backend
is exactly the pipeline it rebuilds. WordPiece vocabularies are also written as `vocab.txt`, the
file BERT tooling reads.
"""

from __future__ import annotations

from typing import Any

GENERIC_CLASS = "PreTrainedTokenizerFast"
BERT_CLASS = "BertTokenizer"
VOCAB_FILE = "vocab.txt"
_BERT_TEMPLATE = {
    "single": ["cls", "$A", "sep"],
    "pair": ["cls", "$A", "sep", "$B", "sep"],
}


def class_config(data: dict[str, Any], cls_token: str | None, sep_token: str | None) -> dict[str, Any]:
    """`tokenizer_class` (and BERT's switches when the class is BertTokenizer) for the parsed `tokenizer.json`."""
    normalizer = data.get("normalizer") or {}
    if not _is_bert(data, cls_token, sep_token):
        return {"tokenizer_class": GENERIC_CLASS}
    return {
        "tokenizer_class": BERT_CLASS,
        "do_lower_case": bool(normalizer.get("lowercase")),
        "strip_accents": normalizer.get("strip_accents"),
        "tokenize_chinese_chars": bool(normalizer.get("handle_chinese_chars")),
    }


def wordpiece_vocab(data: dict[str, Any]) -> list[str] | None:
    """The WordPiece vocabulary of a parsed `tokenizer.json` in id order (`vocab.txt`'s lines); None for other models."""
    model = data.get("model") or {}
    if model.get("type") != "WordPiece":
        return None
    by_id = {index: token for token, index in model.get("vocab", {}).items()}
    if sorted(by_id) != list(range(len(by_id))) or any("\n" in token for token in by_id.values()):
        return None  # a vocab.txt line per id cannot spell this vocabulary
    return [by_id[index] for index in range(len(by_id))]


def _is_bert(data: dict[str, Any], cls_token: str | None, sep_token: str | None) -> bool:
    """Whether the serialised backend is the pipeline transformers' BertTokenizer rebuilds."""
    model, normalizer = data.get("model") or {}, data.get("normalizer") or {}
    decoder, pre = data.get("decoder") or {}, data.get("pre_tokenizer") or {}
    vocab = model.get("vocab") or {}
    added_outside = any(token.get("id", 0) >= len(vocab) for token in data.get("added_tokens") or [])
    return (
        model.get("type") == "WordPiece" and model.get("continuing_subword_prefix") == "##"
        and model.get("max_input_chars_per_word") == 100
        and normalizer.get("type") == "BertNormalizer" and normalizer.get("clean_text") is True
        and pre.get("type") == "BertPreTokenizer"
        and decoder.get("type") == "WordPiece" and decoder.get("prefix") == "##"
        and cls_token is not None and sep_token is not None and cls_token in vocab and sep_token in vocab
        and not added_outside and _bert_template(data.get("post_processor") or {}, cls_token, sep_token)
    )


def _bert_template(processor: dict[str, Any], cls_token: str, sep_token: str) -> bool:
    """`[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with segment ids 0 / 1, as BertTokenizer builds it."""
    if processor.get("type") == "BertProcessing":
        return processor.get("cls", [None])[0] == cls_token and processor.get("sep", [None])[0] == sep_token
    if processor.get("type") != "TemplateProcessing":
        return False
    names = {"cls": cls_token, "sep": sep_token}
    for kind, expected in _BERT_TEMPLATE.items():
        pieces = processor.get(kind) or []
        spelled = [_piece(piece) for piece in pieces]
        wanted = [(names.get(name, name), 1 if kind == "pair" and index > 2 else 0) for index, name in enumerate(expected)]
        if spelled != wanted:
            return False
    return True


def _piece(piece: dict[str, Any]) -> tuple[str, int]:
    """(token or $A / $B, type id) of one template piece."""
    if "Sequence" in piece:
        return f"${piece['Sequence']['id']}", piece["Sequence"]["type_id"]
    special = piece.get("SpecialToken", {})
    return special.get("id", ""), special.get("type_id", -1)
