"""Tokenizers against Hugging Face transformers on real vocabularies, plus training and bad input.

Parity: all-MiniLM-L6-v2 (tokenizer.json, and vocab.txt alone), SmolLM2's GGUF vocabulary, a tiny
SentencePiece-style GGUF written here, and GPT-2 vocab.json + merges.txt (trained here, and the
real files) must give the same ids and character offsets as transformers on Rotten Tomatoes
snippets. Expensive loads are module-scoped fixtures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, GPT2TokenizerFast

from polyformer.errors import TokenizerError
from polyformer.tokenizers import Tokenizer, load_tokenizer, train_bpe, train_wordpiece

N_SNIPPETS = 1000
# Strings that stress the splitters: digits, runs of spaces, newlines, non-Latin scripts, emoji,
# contractions and special-token markup.
EDGE_TEXTS = [
    "2002 12345 3.14 1,000,000 $99.99",
    "  leading and   inner   spaces ",
    "tabs\tand\nnewlines\n\n\n",
    "émigré naïve Ünïcödé 😀 中文字 русский",
    "'s 'LL 'Ve don't I'm",
    "<|im_start|>user\nhi<|im_end|>",
    "",
]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def snippets(rotten_tomatoes_rows: list[dict[str, str]]) -> list[str]:
    return [row["text"] for row in rotten_tomatoes_rows[:N_SNIPPETS]]


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir: Path):
    return AutoTokenizer.from_pretrained(str(minilm_dir))


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Tokenizer:
    return load_tokenizer(minilm_dir)


@pytest.fixture(scope="module")
def minilm_vocab_only(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    folder = tmp_path_factory.mktemp("vocab_only")
    shutil.copy(minilm_dir / "vocab.txt", folder / "vocab.txt")
    return load_tokenizer(folder)


@pytest.fixture(scope="module")
def smollm(smollm2_gguf: Path) -> Tokenizer:
    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="module")
def hf_smollm(smollm2_gguf: Path):
    return AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """A small deterministic corpus of simple sentences (lowercase words, commas, full stops)."""
    rng = np.random.default_rng(0)
    words = ("the cat dog sat ran on under a mat red blue house tree quickly slowly jumped over "
             "big small river bank walked talked reading writing model token").split()
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 12)))) + rng.choice([".", ",", "!"])
            for _ in range(400)]


def assert_same(mine: Tokenizer, reference, texts: list[str], pairs: list[str] | None = None) -> None:
    """Unpadded ids, segment ids and offsets equal the reference tokenizer's, text by text."""
    ours = mine(texts, pairs, padding=False, return_offsets=True, return_tensors=None)
    theirs = reference(texts, pairs, return_offsets_mapping=True)
    for index, text in enumerate(texts):
        assert ours["input_ids"][index] == theirs["input_ids"][index], text
        assert ours["offset_mapping"][index] == [tuple(span) for span in theirs["offset_mapping"][index]], text
        if "token_type_ids" in theirs:
            assert ours["token_type_ids"][index] == theirs["token_type_ids"][index], text
    assert ("token_type_ids" in ours) == ("token_type_ids" in theirs)


# ----------------------------------------------------------------------------- MiniLM (BERT WordPiece)
@pytest.mark.parametrize("loaded", ["minilm", "minilm_vocab_only"])
def test_minilm_matches_transformers(loaded: str, request, hf_minilm, snippets: list[str]) -> None:
    tok = request.getfixturevalue(loaded)
    assert_same(tok, hf_minilm, snippets + EDGE_TEXTS)
    assert_same(tok, hf_minilm, snippets[:200], snippets[200:400])


@pytest.mark.parametrize("loaded", ["minilm", "minilm_vocab_only"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_minilm_padded_batches_match_transformers(loaded: str, side: str, request, minilm_dir, snippets) -> None:
    tok = request.getfixturevalue(loaded)
    reference = AutoTokenizer.from_pretrained(str(minilm_dir), padding_side=side)
    first, second = snippets[:16], snippets[16:32]
    for pairs, max_length in ((None, None), (second, None), (second, 24), (None, 12)):
        ours = tok(first, pairs, padding_side=side, max_length=max_length)
        theirs = reference(first, pairs, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        assert set(ours) == {"input_ids", "attention_mask", "token_type_ids"}
        for key in ours:
            assert ours[key].dtype == torch.long
            assert torch.equal(ours[key], theirs[key]), (key, pairs is not None, max_length)
    column = 0 if side == "left" else -1
    assert (ours["attention_mask"][:, column] == 0).any()  # some row really is padded on that side


def test_minilm_special_tokens(minilm: Tokenizer, minilm_vocab_only: Tokenizer) -> None:
    for tok in (minilm, minilm_vocab_only):
        assert tok.vocab_size == 30522
        assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
            0, 100, 101, 102, 103)
        assert tok.bos_token_id is None and tok.eos_token_id is None
        assert {0, 100, 101, 102, 103} <= tok.special_ids
        assert tok.decode(tok.encode("Hello, World!")) == "hello, world!"
        assert tok.decode(tok.encode("Hello"), skip_special_tokens=False) == "[CLS] hello [SEP]"
    assert minilm.model_max_length == 512
    assert minilm.chat_template is None


# ----------------------------------------------------------------------------- SmolLM2 (GGUF byte-level BPE)
def test_smollm_gguf_matches_transformers(smollm: Tokenizer, hf_smollm, snippets: list[str]) -> None:
    assert_same(smollm, hf_smollm, snippets + EDGE_TEXTS)
    assert smollm.vocab_size == len(hf_smollm) == 49152


def test_smollm_gguf_round_trips(smollm: Tokenizer, snippets: list[str]) -> None:
    for text in snippets + EDGE_TEXTS[:-2]:
        assert smollm.decode(smollm.encode(text)) == text
    markup = EDGE_TEXTS[-2]
    assert smollm.decode(smollm.encode(markup), skip_special_tokens=False) == markup
    assert smollm.decode(smollm.encode(markup)) == "user\nhi"


def test_smollm_gguf_metadata(smollm: Tokenizer, hf_smollm) -> None:
    assert smollm.chat_template and "<|im_start|>" in smollm.chat_template
    assert smollm.chat_template == hf_smollm.chat_template
    assert (smollm.bos_token_id, smollm.eos_token_id, smollm.pad_token_id, smollm.unk_token_id) == (
        hf_smollm.bos_token_id, hf_smollm.eos_token_id, hf_smollm.pad_token_id, hf_smollm.unk_token_id)
    assert smollm.special_ids == set(range(17))  # the file's 17 CONTROL tokens
    assert smollm.model_max_length == 8192  # llama.context_length
    assert smollm.encode("<|im_start|>") == [1]  # matched whole, not split
    messages = [{"role": "user", "content": "What is 2+2?"}]
    expected = hf_smollm.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert smollm.apply_chat_template(messages, add_generation_prompt=True) == expected
    assert smollm.apply_chat_template(messages, add_generation_prompt=True, tokenize=True) == hf_smollm.encode(expected)


def test_smollm_save_load_round_trip(smollm: Tokenizer, snippets: list[str], tmp_path: Path) -> None:
    reloaded = load_tokenizer(smollm.save(tmp_path / "tok"))
    assert reloaded.chat_template == smollm.chat_template
    assert reloaded.special == smollm.special and reloaded.model_max_length == 8192
    ours = smollm(snippets[:100], return_tensors=None, padding=False)
    assert reloaded(snippets[:100], return_tensors=None, padding=False) == ours
    reference = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))  # the saved folder is HF-loadable
    assert reference(snippets[:100])["input_ids"] == ours["input_ids"]


# ----------------------------------------------------------------------------- SentencePiece-style GGUF
@pytest.fixture(scope="module")
def tiny_llama_gguf(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 'llama' (SentencePiece BPE + byte fallback) GGUF vocabulary, merges left to the scores."""
    import gguf
    from tokenizers import SentencePieceBPETokenizer

    sentencepiece = SentencePieceBPETokenizer()
    sentencepiece.train_from_iterator(corpus, vocab_size=150, min_frequency=2,
                                      special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    vocab = sentencepiece.get_vocab()
    learned = sorted(vocab, key=vocab.get)
    tokens = learned[:3] + [f"<0x{byte:02X}>" for byte in range(256)] + learned[3:]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(learned) - 3)
    scores = [0.0] * 259 + [-float(rank) for rank in range(len(learned) - 3)]
    file = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    writer = gguf.GGUFWriter(str(file), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores(scores)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_context_length(256)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return file


def test_sentencepiece_gguf_matches_transformers(tiny_llama_gguf: Path, corpus: list[str]) -> None:
    tok = load_tokenizer(tiny_llama_gguf)
    reference = AutoTokenizer.from_pretrained(str(tiny_llama_gguf.parent), gguf_file=tiny_llama_gguf.name)
    texts = corpus[:50] + EDGE_TEXTS
    assert_same(tok, reference, texts)
    assert tok.encode("the cat")[0] == tok.bos_token_id == 1  # llama files add BOS by default
    for text in corpus[:50] + ["unseen Ünïcödé 😀 text"]:  # byte fallback covers unseen characters
        assert tok.decode(tok.encode(text)) == text
        assert tok.unk_token_id not in tok.encode(text)


# ----------------------------------------------------------------------------- GPT-2 vocab.json + merges.txt
def test_trained_gpt2_files_match_transformers(corpus: list[str], snippets: list[str], tmp_path: Path) -> None:
    trained = train_bpe(corpus + snippets[:300], vocab_size=600)
    trained.backend.model.save(str(tmp_path))  # writes vocab.json + merges.txt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merges.txt", "vocab.json"]
    tok = load_tokenizer(tmp_path)
    reference = GPT2TokenizerFast(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert len(reference) == tok.vocab_size == 600
    assert_same(tok, reference, snippets[:300] + EDGE_TEXTS)
    assert tok.eos_token_id == tok.bos_token_id == reference.eos_token_id == 0


def test_real_gpt2_files_match_transformers(gpt2_bpe_dir: Path, snippets: list[str]) -> None:
    tok = load_tokenizer(gpt2_bpe_dir)
    reference = GPT2TokenizerFast(str(gpt2_bpe_dir / "vocab.json"), str(gpt2_bpe_dir / "merges.txt"))
    assert tok.vocab_size == 50257 and tok.eos_token_id == 50256
    assert tok.encode("Hello world") == [15496, 995]
    assert_same(tok, reference, snippets[:200] + EDGE_TEXTS)


# ----------------------------------------------------------------------------- training
def test_train_wordpiece(corpus: list[str], tmp_path: Path) -> None:
    tok = train_wordpiece(corpus, vocab_size=120, min_frequency=2)
    assert 40 < tok.vocab_size <= 120
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0, 1, 2, 3, 4)
    assert any(token.startswith("##") for token in tok.get_vocab())  # subwords were learnt
    for text in corpus[:50]:
        ids = tok.encode(text)
        assert ids[0] == 2 and ids[-1] == 3 and 1 not in ids
        assert tok.decode(ids) == text
    assert tok.decode(tok.encode("The CAT sat.")) == "the cat sat."
    assert tok.unk_token_id in tok.encode("zzz 😀")  # unseen characters are unknown, not an error
    assert "token_type_ids" in tok(["a cat"], ["a dog"])

    # `tokenizers`' WordPiece trainer breaks count ties in hash-map order (huggingface/tokenizers#1794),
    # so two runs may differ in a few tokens; sizes, specials and round trips are stable.
    file = tmp_path / "corpus.txt"
    file.write_text("\n".join(corpus), encoding="utf-8")
    from_file = train_wordpiece(file, vocab_size=120, min_frequency=2)
    assert 40 < from_file.vocab_size <= 120 and from_file.cls_token_id == 2
    assert all(from_file.decode(from_file.encode(text)) == text for text in corpus[:50])


def test_train_bpe(corpus: list[str], tmp_path: Path) -> None:
    tok = train_bpe(corpus, vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"])
    assert tok.vocab_size == 300  # 256 bytes + 2 specials + 42 merges
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.pad_token_id == 1
    assert tok.eos_token_id == tok.bos_token_id == 0
    for text in corpus[:50] + EDGE_TEXTS:
        assert tok.decode(tok.encode(text)) == text  # byte-level: every string round-trips
    assert len(tok.encode("the cat sat on the mat")) < len("the cat sat on the mat")  # merges shorten text
    assert tok.decode(tok.encode("a<|endoftext|>b"), skip_special_tokens=True) == "ab"

    reloaded = load_tokenizer(tok.save(tmp_path / "bpe"))
    assert reloaded.encode(corpus[0]) == tok.encode(corpus[0]) and reloaded.pad_token_id == 1

    file = tmp_path / "corpus.txt"  # files are streamed line by line, newlines included
    file.write_text("\n".join(corpus), encoding="utf-8")
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    assert train_bpe([file], vocab_size=300).get_vocab() == train_bpe(lines, vocab_size=300).get_vocab()
    assert train_bpe(file, vocab_size=300).get_vocab() == train_bpe(iter(lines), vocab_size=300).get_vocab()


# ----------------------------------------------------------------------------- batching and limits
def test_padding_sides_and_fallback_pad(gpt2_like: Tokenizer) -> None:
    texts = ["a much longer text than the other one", "short"]
    right = gpt2_like(texts)
    left = gpt2_like(texts, padding_side="left")
    length = right["input_ids"].shape[1]
    short = len(gpt2_like.encode("short"))
    assert right["attention_mask"][1].tolist() == [1] * short + [0] * (length - short)
    assert left["attention_mask"][1].tolist() == [0] * (length - short) + [1] * short
    assert left["input_ids"][1, -short:].tolist() == right["input_ids"][1, :short].tolist()
    assert left["input_ids"][1, 0].item() == gpt2_like.eos_token_id  # no pad token: eos fills the gaps
    unpadded = gpt2_like(texts, padding=False, return_tensors=None)
    assert [len(row) for row in unpadded["input_ids"]] == [length, short]
    with pytest.raises(TokenizerError, match="padding=True"):
        gpt2_like(texts, padding=False)
    fixed = gpt2_like(texts, padding="max_length", max_length=20, return_tensors="np")
    assert fixed["input_ids"].shape == (2, 20) and fixed["input_ids"].dtype == np.int64


@pytest.fixture(scope="module")
def gpt2_like(corpus: list[str]) -> Tokenizer:
    return train_bpe(corpus, vocab_size=300)


def test_truncation(minilm: Tokenizer, snippets: list[str]) -> None:
    batch = minilm(snippets[:8], max_length=10)
    assert batch["input_ids"].shape == (8, 10)
    assert (batch["input_ids"][:, 0] == 101).all() and (batch["input_ids"][:, -1] == 102).all()
    whole = minilm(snippets[:8], truncation=False, return_tensors=None, padding=False)
    assert max(len(row) for row in whole["input_ids"]) > 10


def test_two_million_characters_are_truncated(minilm: Tokenizer, smollm: Tokenizer, snippets: list[str]) -> None:
    text = " ".join(snippets) * 20  # real text, about 2.3M characters
    assert len(text) > 2_000_000
    assert minilm(text)["input_ids"].shape == (1, 512)
    assert smollm(text, max_length=1024)["input_ids"].shape == (1, 1024)
    offsets = minilm(text, max_length=4, return_offsets=True)["offset_mapping"]
    assert offsets[0].tolist() == [[0, 0], [0, 1], [2, 7], [0, 0]]  # "[CLS] a three [SEP]"


@pytest.mark.parametrize("loaded", ["minilm", "smollm", "gpt2_like"])
def test_long_inputs_truncate_like_the_whole_text(loaded: str, request, snippets: list[str]) -> None:
    """Long inputs are tokenised from a prefix; the ids must equal truncating the whole encoding."""
    tok = request.getfixturevalue(loaded)
    long_text = " ".join(snippets)[:60_000]
    spaces_first = " " * 70_000 + "hello world"  # a prefix with no tokens: the whole text is needed
    specials = tok.num_special_tokens_to_add()
    for text in (long_text, spaces_first):
        whole = tok.encode(text, add_special_tokens=False)
        for limit in (8, 512):
            got = tok(text, max_length=limit, return_tensors=None)["input_ids"]
            assert len(got) == min(limit, len(whole) + specials)
            assert [i for i in got if i not in tok.special_ids] == whole[: limit - specials]


# ----------------------------------------------------------------------------- bad input and bad files
def test_bad_inputs(minilm: Tokenizer) -> None:
    with pytest.raises(TokenizerError, match=r"texts\[2\] is int"):
        minilm(["fine", "also fine", 3])
    with pytest.raises(TokenizerError, match=r"text_pair has 1 items"):
        minilm(["a", "b"], ["c"])
    with pytest.raises(TokenizerError, match="max_length"):
        minilm("a", max_length=0)
    assert minilm("")["input_ids"].tolist() == [[101, 102]]
    assert minilm.encode(b"caf\xc3\xa9 \xff\xfe ok") == minilm.encode("café \ufffd\ufffd ok")  # invalid UTF-8 replaced
    assert minilm.encode("lone \ud800 surrogate") == minilm.encode("lone \ufffd surrogate")
    assert minilm.encode("pair \ud83d\ude00") == minilm.encode("pair \U0001f600")
    with pytest.raises(TokenizerError, match="non-negative"):
        minilm.decode([1, -2])


def test_bad_files(tmp_path: Path, minilm_dir: Path, smollm2_gguf: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(TokenizerError, match="nope"):
        load_tokenizer(missing)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": {', encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: malformed JSON at line 1"):
        load_tokenizer(broken)
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}', encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: not a valid tokenizers file"):
        load_tokenizer(broken / "tokenizer.json")
    (broken / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match="no tokenizer found"):
        load_tokenizer(broken)
    config_dir = tmp_path / "bad_config"
    shutil.copytree(minilm_dir, config_dir, ignore=shutil.ignore_patterns("*.safetensors"))
    (config_dir / "tokenizer_config.json").write_text("not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json: malformed JSON"):
        load_tokenizer(config_dir)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm2_gguf.read_bytes()[:4096])
    with pytest.raises(TokenizerError, match=r"truncated\.gguf"):
        load_tokenizer(truncated)
    (tmp_path / "notes.md").write_text("hello", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"notes\.md: unknown tokenizer file"):
        load_tokenizer(tmp_path / "notes.md")


def test_catalog_names_and_saved_config(minilm: Tokenizer, tmp_path: Path) -> None:
    by_name = load_tokenizer("all-MiniLM-L6-v2")
    assert by_name.encode("catalog names work") == minilm.encode("catalog names work")
    assert load_tokenizer("all-MiniLM-L6-v2").vocab_size == 30522
    saved = minilm.save(tmp_path / "minilm")
    config = json.loads((saved / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["model_input_names"] == ["input_ids", "token_type_ids", "attention_mask"]
    assert (config["cls_token"], config["model_max_length"]) == ("[CLS]", 512)
    assert json.loads((saved / "tokenizer.json").read_text(encoding="utf-8"))["truncation"] is None
