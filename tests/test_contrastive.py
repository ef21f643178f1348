"""Contrastive training: the MNRL loss by hand, the gradient cache, DDP gathering, pairs and a real run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from contrastive_tiny import RandomPairs, tiny_encoder, train

import polyformer as pf
from polyformer.embeddings.contrastive import EmbeddingModel, MultipleNegativesRanking, mnrl_sums
from polyformer.embeddings.pairs import PairSource, continuation_pairs, read_pair_files, speeches
from polyformer.embeddings.pairs import shakespeare_works as split_works
from polyformer.embeddings.training import train_contrastive
from polyformer.errors import DataError
from polyformer.io.safetensors_io import read_tensors
from polyformer.training.trainer import TrainConfig

SCRIPT = Path(__file__).with_name("contrastive_tiny.py")


# ---- the loss against a direct computation ----------------------------------------------------------
def direct_mnrl(anchors, positives, negatives, scale, symmetric):
    """Mean over anchors of -log softmax over [all positives, all negatives], one row at a time."""
    candidates = [*positives, *negatives]
    losses = []
    for i, a in enumerate(anchors):
        scores = torch.stack([scale * F.cosine_similarity(a, c, dim=0) for c in candidates])
        forward = -(scores[i] - torch.logsumexp(scores, dim=0))
        if symmetric:
            back = torch.stack([scale * F.cosine_similarity(positives[i], b, dim=0) for b in anchors])
            forward = (forward - (back[i] - torch.logsumexp(back, dim=0))) / 2
        losses.append(forward)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("with_negatives", [False, True])
def test_mnrl_matches_direct_computation(symmetric, with_negatives):
    torch.manual_seed(0)
    a, p, n = (F.normalize(torch.randn(5, 8), dim=-1) for _ in range(3))
    negatives = n if with_negatives else torch.empty(0, 8)
    candidates = torch.cat([p, negatives])
    loss, correct = mnrl_sums(a, candidates, torch.arange(5), 20.0, symmetric, all_anchors=a, positives=p)
    expected = direct_mnrl(list(a), list(p), list(negatives), 20.0, symmetric)
    torch.testing.assert_close(loss / 5, expected, rtol=1e-5, atol=1e-6)
    assert correct == int(((a @ candidates.T).argmax(1) == torch.arange(5)).sum())


def test_objective_on_a_batch_equals_the_loss_of_its_embeddings():
    model = EmbeddingModel(tiny_encoder(), "mean")
    batch = RandomPairs(rows=6, columns=3).train_batch(0, 0)
    objective = MultipleNegativesRanking(scale=10.0)
    got = objective.sums(model, batch)["mnrl"]
    with torch.no_grad():
        a, p, n = (model(batch["input_ids"][:, c], batch["attention_mask"][:, c]) for c in range(3))
    expected = direct_mnrl(list(a), list(p), list(n), 10.0, False) * 6
    torch.testing.assert_close(got.detach(), expected, rtol=1e-5, atol=1e-5)
    assert objective.counts(batch)["mnrl"] == 6


def _grads(model, objective, batch):
    model.zero_grad()
    objective.sums(model, batch)["mnrl"].backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_gradient_cache_gives_the_full_batch_gradient():
    batch = RandomPairs(rows=8, columns=3).train_batch(1, 0)
    model = EmbeddingModel(tiny_encoder(), "mean")
    full = _grads(model, MultipleNegativesRanking(symmetric=True), batch)
    cached = _grads(model, MultipleNegativesRanking(symmetric=True, mini_batch=5), batch)
    assert full.keys() == cached.keys() and len(full) > 10
    for name in full:
        torch.testing.assert_close(cached[name], full[name], rtol=1e-4, atol=1e-5)


def test_gradient_cache_replays_dropout_masks():
    """With dropout on, the cached pass and the graph pass must see the same masks."""
    batch = RandomPairs(rows=6, columns=2).train_batch(2, 0)
    model = EmbeddingModel(tiny_encoder(dropout=0.3), "mean").train()
    torch.manual_seed(7)
    cached = _grads(model, MultipleNegativesRanking(mini_batch=4), batch)
    # reference: the same chunks run with a graph from the same RNG state, in the same order
    model.zero_grad()
    torch.manual_seed(7)
    ids = batch["input_ids"].transpose(0, 1).reshape(12, -1)
    mask = batch["attention_mask"].transpose(0, 1).reshape(12, -1)
    flat = torch.cat([model(i, m) for i, m in zip(ids.split(4), mask.split(4))]).view(2, 6, -1)
    loss, _ = mnrl_sums(flat[0], flat[1], torch.arange(6), 20.0)
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(cached[name], p.grad, rtol=1e-4, atol=1e-6)


def test_bad_batches_are_data_errors():
    model = EmbeddingModel(tiny_encoder(), "mean")
    with pytest.raises(DataError, match=r"\(B, 2\|3, T\)"):
        MultipleNegativesRanking().sums(model, {"input_ids": torch.ones(4, 7, dtype=torch.long), "attention_mask": torch.ones(4, 7)})


# ---- DDP: negatives gathered across ranks -------------------------------------------------------------
def _losses(run: Path) -> list[list[float]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return [[float(row["loss"]), float(row["grad_norm"])] for row in csv.DictReader(handle)]


def _torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), "--out", str(out), *extra]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("extra", [
    pytest.param((), marks=pytest.mark.slow, id="gather"),
    pytest.param(("--mini-batch", "3", "--symmetric", "--negatives"), id="gather+cache"),
])
def test_two_ranks_equal_one_process_on_the_global_batch(tmp_path, extra):
    """Each rank holds 4 of 8 rows; gathering makes every anchor meet all 8 (and the gradient exact)."""
    result = _torchrun(tmp_path / "ddp", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    train(str(tmp_path / "one"), mini_batch=3 if extra else None, gather=True, columns=3 if extra else 2, symmetric=bool(extra))
    got, expected = _losses(tmp_path / "ddp"), _losses(tmp_path / "one")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    final = "checkpoints/step-000003/model.safetensors"
    a, b = read_tensors(tmp_path / "ddp" / final), read_tensors(tmp_path / "one" / final)
    for name in b:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0)


# ---- pairs -----------------------------------------------------------------------------------------
@pytest.fixture()
def tiny_st(tiny_sentence_encoder_dir):
    return pf.SentenceEncoder.load(tiny_sentence_encoder_dir)


def test_pair_source_draws_distinct_rows_split_by_rank(tiny_st):
    pairs = [(f"anchor {i}", f"positive {i}") for i in range(40)]
    source = PairSource(pairs, tiny_st, batch_size=8, seed=3)
    whole = source.train_batch(5, 1)
    assert whole["input_ids"].shape[:2] == (8, 2)
    texts = [tiny_st.tokenizer.decode(row.tolist()) for row in whole["input_ids"][:, 0]]
    assert len(set(texts)) == 8  # drawn without replacement: no row is its own negative
    halves = [source.train_batch(5, 1, rank, 2) for rank in range(2)]
    joined = torch.cat([h["input_ids"][..., :3] for h in halves])
    assert torch.equal(joined, whole["input_ids"][..., :3])
    assert torch.equal(source.train_batch(5, 1)["input_ids"], whole["input_ids"])
    assert not torch.equal(source.train_batch(6, 1)["input_ids"], whole["input_ids"])


def test_pair_files_with_negatives_and_errors(tmp_path):
    good = tmp_path / "pairs.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in [
        {"anchor": "a", "positive": "b", "negative": "c"}, {"anchor": "d", "positive": "e", "negative": "f"}]) + "\n")
    assert read_pair_files(good) == [("a", "b", "c"), ("d", "e", "f")]
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("text_a,text_b\nx,y\n")
    assert read_pair_files([csv_file]) == [("x", "y")]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a", "positive": "b", "negative": "n"}\n')
    with pytest.raises(DataError, match="mixed.jsonl:2"):
        read_pair_files(mixed)
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"anchor": "a"}\n')
    with pytest.raises(DataError, match="missing.jsonl:1.*'positive'"):
        read_pair_files(missing)
    with pytest.raises(DataError, match="not a built-in pair set"):
        read_pair_files("no-such-set")


def test_speeches_drop_the_speaker_line():
    text = "ACT I.\n\nGLOUCESTER.\nPeace, mayor!\nthou know'st little.\n\nHere they skirmish.\n\nFIRST CITIZEN.\nAy."
    assert speeches(text) == [["Peace, mayor!", "thou know'st little."], ["Ay."]]


def test_builtin_pairs_keep_held_out_plays_apart(shakespeare_dir):
    train = {name for name, _ in split_works("train")}
    held = {name for name, _ in split_works("validation")}
    assert len(held) == 4 and len(train) == 38 and not train & held
    pairs = continuation_pairs("validation")
    assert len(pairs) > 1000 and all(len(p) == 2 and p[0] and p[1] for p in pairs)


# ---- a real run: the trainer, a saved folder, sentence-transformers ---------------------------------
def test_training_separates_pairs_and_saves_a_loadable_folder(tiny_sentence_encoder_dir, tmp_path):
    encoder = pf.SentenceEncoder.load(tiny_sentence_encoder_dir)
    pairs = [(f"the {w} is here", f"a {w} arrives") for w in
             "cat dog bird fish horse cow sheep goat wolf bear lion tiger mouse rat frog owl".split()]
    config = TrainConfig(max_steps=30, lr=1e-2, weight_decay=0.0, out_dir=str(tmp_path / "run"),
                         progress=False, tensorboard=False, plot=False, eval_every=30)
    history = train_contrastive(encoder, pairs, config, batch_size=8, validation=pairs)
    assert history[-1]["loss"] < history[0]["loss"] * 0.5
    assert history[-1]["eval_mnrl_accuracy"] >= 0.9
    again = pf.SentenceEncoder.load(tmp_path / "run" / "model")
    texts = [t for pair in pairs[:4] for t in pair]
    np.testing.assert_allclose(again.encode(texts), encoder.encode(texts), atol=1e-6)
    st = pytest.importorskip("sentence_transformers").SentenceTransformer(str(tmp_path / "run" / "model"), device="cpu")
    np.testing.assert_allclose(st.encode(texts), encoder.encode(texts), atol=1e-5)
