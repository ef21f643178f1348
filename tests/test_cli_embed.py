"""The embedding verbs through the CLI: embed, index build/add/delete/info, search, cluster, embed-eval,
embed-train — and their bad input as one `error:` line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import assert_one_line_error, run_cli, run_cli_process

VERBS = [["embed"], ["embed-train"], ["embed-eval"], ["index"], ["index", "build"], ["index", "add"],
         ["index", "delete"], ["index", "info"], ["search"], ["cluster"]]
TOPICS = {
    "film": ["a gripping thriller with a clever twist", "the suspense keeps you guessing", "a dull romantic comedy"],
    "market": ["the stock market fell sharply today", "shares rallied after the earnings report", "bond yields rose again"],
}


@pytest.fixture()
def docs(tmp_path) -> Path:
    path = tmp_path / "docs.jsonl"
    rows = [{"id": f"{topic}-{i}", "text": text, "topic": topic} for topic, texts in TOPICS.items() for i, text in enumerate(texts)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture()
def built(tmp_path, docs, tiny_sentence_encoder_dir) -> Path:
    out = tmp_path / "idx"
    result = run_cli("index", "build", "--model", tiny_sentence_encoder_dir, "--input", docs, "--out", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"committed": 6, "of": 6}
    return out


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_every_verb_has_help(verb):
    result = run_cli(*verb, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_embed_prints_one_json_line_per_text(tmp_path, tiny_sentence_encoder_dir):
    from polyformer.embeddings import SentenceEncoder

    texts = tmp_path / "texts.txt"
    texts.write_text("first text\n\nsecond text\n")
    result = run_cli("embed", "--model", tiny_sentence_encoder_dir, "--input", texts, "--npy", tmp_path / "v.npy", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    rows = jsonl(result.stdout)
    assert [row["id"] for row in rows] == ["texts.txt:1", "texts.txt:3"]
    expected = SentenceEncoder.load(tiny_sentence_encoder_dir).encode(["first text", "second text"])
    np.testing.assert_allclose(np.array([row["embedding"] for row in rows]), expected, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-7)


def test_search_filter_like_delete_and_add(built, tmp_path):
    hits = jsonl(run_cli("search", built, "shares rallied after the earnings report", "-k", "3").stdout)
    assert len(hits) == 3 and hits[0]["id"] == "market-1" and set(hits[0]) == {"id", "score", "text", "metadata"}
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    filtered = jsonl(run_cli("search", built, "shares rallied", "-k", "5", "--where", "topic=film").stdout)
    assert len(filtered) == 3 and {h["metadata"]["topic"] for h in filtered} == {"film"}
    like = jsonl(run_cli("search", built, "--like", "film-0", "-k", "2").stdout)
    assert len(like) == 2 and "film-0" not in [h["id"] for h in like]
    assert json.loads(run_cli("index", "delete", built, "market-1").stdout) == {"deleted": 1, "items": 5}
    assert "market-1" not in [h["id"] for h in jsonl(run_cli("search", built, "shares rallied", "-k", "5").stdout)]
    more = tmp_path / "more.txt"
    more.write_text("a brand new line\n")
    assert run_cli("index", "add", built, "--input", more, "--device", "cpu").returncode == 0
    info = json.loads(run_cli("index", "info", built).stdout)
    assert info["items"] == 6 and info["kind"] == "exact" and info["dimension"] == 32


def test_cluster_an_index_with_assignments(tmp_path, docs, built):
    from polyformer.embeddings.index import VectorIndex

    result = run_cli("cluster", "--index", built, "--k", "2", "--assignments", tmp_path / "a.jsonl", "--central", "2")
    assert result.returncode == 0, result.stderr
    clusters = jsonl(result.stdout)
    assert sum(c["size"] for c in clusters) == 6 and all(len(c["central"]) <= 2 for c in clusters)
    assigned = {row["id"]: row["cluster"] for row in jsonl((tmp_path / "a.jsonl").read_text())}
    assert set(assigned) == set(VectorIndex.open(built).items()[0])
    for found in clusters:  # the central texts belong to their cluster; terms come from its texts
        assert all(assigned[member["id"]] == found["cluster"] for member in found["central"])
        words = " ".join(row["text"] for row in map(json.loads, docs.read_text().splitlines()) if assigned[row["id"]] == found["cluster"])
        assert found["terms"] and all(term in words for term in found["terms"])


def test_embed_eval_on_files(tmp_path, tiny_sentence_encoder_dir):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"text": t, "label": topic}) + "\n" for topic, texts in TOPICS.items() for t in texts * 2))
    scored = tmp_path / "scored.csv"
    scored.write_text("text_a,text_b,score\na cat,a cat,5\na cat,a kitten,3\na cat,the stock market,0\n")
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "market news"}\n')
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "the stock market fell"}\n{"_id": "d2", "text": "a dull comedy"}\n')
    (beir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    result = run_cli("embed-eval", "--model", tiny_sentence_encoder_dir, "--clustering", labelled, "--knn", labelled,
                     "--similarity", scored, "--retrieval", beir, "--plot", tmp_path / "plots", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert {"labelled/v_measure", "labelled/knn_accuracy", "scored/spearman", "beir/recall@1", "beir/ndcg@10"} <= set(figures)
    assert figures["beir/recall@10"] == 1.0  # two documents: the relevant one is always in the top 10
    assert (tmp_path / "plots" / "labelled.png").stat().st_size > 1000


def test_embed_train_writes_a_loadable_model(tmp_path, tiny_sentence_encoder_dir):
    from polyformer.embeddings import SentenceEncoder

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": f"the {w}", "positive": f"a {w}"}) + "\n" for w in "cat dog owl fox".split()))
    result = run_cli("embed-train", "--model", tiny_sentence_encoder_dir, "--data", pairs, "--out", tmp_path / "run",
                     "--max-steps", "2", "--batch-size", "4", "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    encoder = SentenceEncoder.load(tmp_path / "run" / "model")
    assert encoder.encode(["the cat"]).shape == (1, 32)


# ---- bad input: one line, exit code 2 ---------------------------------------------------------------
def test_empty_input_and_missing_files(tmp_path, tiny_sentence_encoder_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert_one_line_error(run_cli("embed", "--model", tiny_sentence_encoder_dir, "--input", empty), "empty.txt", "no texts")
    assert_one_line_error(run_cli("embed", "--model", tiny_sentence_encoder_dir, "--input", tmp_path / "nope.jsonl"), "nope.jsonl", "no such file")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "wrong field"}\n')
    assert_one_line_error(run_cli("embed", "--model", tiny_sentence_encoder_dir, "--input", bad), "bad.jsonl:2", "'text'")


def test_corrupted_or_missing_index_directory(tmp_path, built):
    assert_one_line_error(run_cli("search", tmp_path / "nowhere", "query"), "nowhere", "no such index directory")
    (built / "meta.json").write_text("garbage")
    assert_one_line_error(run_cli("search", built, "query"), "meta.json", "unreadable")
    assert_one_line_error(run_cli("index", "info", tmp_path), "meta.json is missing")


def test_model_and_index_dimension_mismatch(tmp_path, built, minilm_dir):
    more = tmp_path / "more.txt"
    more.write_text("x\n")
    assert_one_line_error(run_cli("index", "add", built, "--input", more, "--model", minilm_dir, "--device", "cpu"),
                          "384-dim", "32-dim")
    assert_one_line_error(run_cli("search", built, "q", "--model", minilm_dir, "--device", "cpu"), "384-dim", "32-dim")


def test_bad_search_and_cluster_options(built, docs, tiny_sentence_encoder_dir):
    assert_one_line_error(run_cli("search", built), "exactly one of QUERY")
    assert_one_line_error(run_cli("search", built, "q", "--where", "topic"), "FIELD=VALUE")
    assert_one_line_error(run_cli("search", built, "--like", "missing-id"), "'missing-id' is not in the index")
    assert_one_line_error(run_cli("cluster", "--index", built, "--k", "50"), "50 clusters of 6 texts")
    assert_one_line_error(run_cli("cluster", "--k", "2"), "--input FILE")
    assert_one_line_error(run_cli("index", "add", built, "--input", docs, "--device", "cpu"), "already in the index", "--existing")


def test_long_texts_are_truncated_with_a_warning(tmp_path, tiny_sentence_encoder_dir):
    texts = tmp_path / "long.txt"
    texts.write_text("short\n" + "word " * 5000 + "\n")
    result = run_cli_process("embed", "--model", tiny_sentence_encoder_dir, "--input", texts, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(jsonl(result.stdout)) == 2
    assert "1 of 2 texts were longer than max_seq_length=64 tokens and were truncated" in result.stderr
