"""`polyformer serve` against a live server on 127.0.0.1, with the official `openai` client and httpx.

Every form is served at once: a tiny decoder with a chat template (completions, chat), a tiny
sentence encoder (embeddings, rerank), tiny sequence / token / pair classifiers and an index.
Answers must equal what the CLI and the Python API give for the same input: greedy and seeded
texts identical to `polyformer generate` (requests sent concurrently, so they share the decode
batch), embeddings at cosine >= 0.9999 to `SentenceEncoder.encode`, classifications equal to
`pf.pipeline`, search hits equal to `search_texts`.
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from cli_runner import run_cli
from server_helpers import LiveServer, save_tiny_chat_model, save_tiny_classifier
from test_generate import one_thread  # noqa: F401 - tiny models decode fastest on one thread

import polyformer as pf
from polyformer.embeddings import SentenceEncoder
from polyformer.embeddings.documents import Item
from polyformer.embeddings.semantic import build_index, search_texts
from polyformer.server import Served, ServerSettings

openai = pytest.importorskip("openai")

PROMPTS = ["the cat sat", "a dog ran in the park", "café crème and"]
DOCS = ["the cat sat on the mat", "a dog ran in the park", "stock markets fell sharply", "the kitten slept"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, tiny_sentence_encoder_dir, minilm_dir):
    root = tmp_path_factory.mktemp("served")
    encoder = SentenceEncoder.load(tiny_sentence_encoder_dir)
    build_index(root / "index", encoder, [Item(f"d{i}", text, {"even": i % 2 == 0}) for i, text in enumerate(DOCS)],
                model=str(tiny_sentence_encoder_dir))
    return {
        "chat": save_tiny_chat_model(root / "chat"),
        "encoder": tiny_sentence_encoder_dir,
        "sentiment": save_tiny_classifier(root / "sentiment", minilm_dir, "sequence-classification",
                                          ["fresh", "rotten"], {"task": "classify"}),
        "ner": save_tiny_classifier(root / "ner", minilm_dir, "token-classification", ["O", "B-person", "I-person"],
                                    {"task": "ner"}),
        "pair": save_tiny_classifier(root / "pair", minilm_dir, "sequence-classification", ["next", "random"],
                                     {"task": "pair"}),
        "index": root / "index",
    }


@pytest.fixture(scope="module")
def server(dirs):
    models = [Served(name, str(dirs[name])) for name in ("chat", "encoder", "sentiment", "ner", "pair")]
    with LiveServer(ServerSettings(models=models, indexes=[Served("docs", str(dirs["index"]))], max_concurrent=4)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def cli_text(dirs, prompt: str, *options: str) -> str:
    result = run_cli("generate", "--model", dirs["chat"], "--prompt", prompt, *options)
    assert result.returncode == 0, result.stderr
    return result.stdout.removesuffix("\n")


def test_concurrent_greedy_and_seeded_completions_equal_the_cli(client, dirs):
    def complete(prompt: str, **options):
        return client.completions.create(model="chat", prompt=prompt, max_tokens=12, **options)

    with ThreadPoolExecutor(len(PROMPTS) * 2) as pool:
        greedy = list(pool.map(lambda p: complete(p, temperature=0), PROMPTS))
        sampled = list(pool.map(lambda p: complete(p, temperature=1.0, top_p=0.9, seed=3, n=2, extra_body={"top_k": 20}),
                                PROMPTS))
    for prompt, answer, draws in zip(PROMPTS, greedy, sampled):
        assert answer.choices[0].text == cli_text(dirs, prompt, "--max-new-tokens", "12")
        options = ["--max-new-tokens", "12", "--temperature", "1.0", "--top-k", "20", "--top-p", "0.9"]
        assert draws.choices[0].text == cli_text(dirs, prompt, *options, "--seed", "3")
        assert draws.choices[1].text == cli_text(dirs, prompt, *options, "--seed", "4")  # choice j: seed + j
    tokenizer = pf.load_tokenizer(dirs["chat"])
    assert greedy[0].usage.prompt_tokens == len(tokenizer.encode(PROMPTS[0]))
    assert greedy[0].usage.completion_tokens == 12 and greedy[0].choices[0].finish_reason == "length"


def test_streamed_completion_equals_the_whole_one_with_usage(client):
    options = dict(model="chat", prompt=PROMPTS[1], max_tokens=16, temperature=0)
    whole = client.completions.create(**options)
    chunks = list(client.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_prompt_lists_token_ids_echo_and_logprobs(client):
    tokenizer_ids = httpx.post(f"{client.base_url}tokenize", json={"model": "chat", "prompt": PROMPTS[0]}).json()["tokens"]
    by_text = client.completions.create(model="chat", prompt=PROMPTS[:2], max_tokens=6, temperature=0)
    by_ids = client.completions.create(model="chat", prompt=[tokenizer_ids], max_tokens=6, temperature=0)
    assert [c.index for c in by_text.choices] == [0, 1]
    assert by_ids.choices[0].text == by_text.choices[0].text
    echoed = client.completions.create(model="chat", prompt=PROMPTS[0], max_tokens=6, temperature=0, echo=True, logprobs=2)
    choice = echoed.choices[0]
    assert choice.text == PROMPTS[0] + by_text.choices[0].text
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(tokenizer_ids) + 6 and logprobs.token_logprobs[0] is None
    for value, top in zip(logprobs.token_logprobs[len(tokenizer_ids):], logprobs.top_logprobs[len(tokenizer_ids):]):
        assert 1 <= len(top) <= 2 and value <= 0
        assert value >= max(top.values()) - 1e-5  # greedy: the chosen token is the best (tokens may share a text)


def test_chat_whole_and_streamed_equal_the_cli_chat(client, dirs):
    messages = [{"role": "user", "content": PROMPTS[0]}]
    want = cli_text(dirs, PROMPTS[0], "--chat", "--max-new-tokens", "12")
    whole = client.chat.completions.create(model="chat", messages=messages, max_tokens=12, temperature=0)
    assert whole.choices[0].message.content == want and whole.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(model="chat", messages=messages, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}, logprobs=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert all(entry.logprob <= 0 for c in chunks if c.choices and c.choices[0].logprobs
               for entry in c.choices[0].logprobs.content)


def test_embeddings_equal_the_sentence_encoder(client, dirs):
    texts = ["the cat sat on the mat", "café crème", "a much longer sentence about dogs running in the park " * 3]
    want = SentenceEncoder.load(dirs["encoder"]).encode(texts)
    got = np.array([d.embedding for d in client.embeddings.create(model="encoder", input=texts).data])  # base64
    assert (np.sum(got * want, axis=1) >= 0.9999).all()
    raw = httpx.post(f"{client.base_url}embeddings", json={"model": "encoder", "input": texts[0], "dimensions": 8,
                                                             "encoding_format": "float"}).json()
    short = np.array(raw["data"][0]["embedding"])
    assert short.shape == (8,) and np.linalg.norm(short) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(short, want[0, :8] / np.linalg.norm(want[0, :8]), atol=1e-4)
    packed = httpx.post(f"{client.base_url}embeddings", json={"model": "chat", "input": [[5, 6, 7]],
                                                                "encoding_format": "base64"}).json()
    assert np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype=np.float32).shape == (128,)


def post(server, path: str, payload: dict) -> dict:
    response = httpx.post(f"{server.url}{path}", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_classify_sequences_entities_and_pairs_equal_the_pipelines(server, dirs):
    texts = ["A gripping thriller.", "Barack Obama visited Paris"]
    sentiment = post(server, "/v1/classify", {"model": "sentiment", "input": texts})["data"]
    want = pf.pipeline("text-classification", dirs["sentiment"], device="cpu")(texts)
    assert [d["label"] for d in sentiment] == [w["label"] for w in want]
    assert np.allclose([d["score"] for d in sentiment], [w["score"] for w in want], atol=1e-5)
    entities = post(server, "/v1/classify", {"model": "ner", "input": texts[1]})["data"][0]["entities"]
    expected = pf.pipeline("ner", dirs["ner"], device="cpu")(texts[1])["entities"]
    assert [(e["entity"], e["start"], e["end"]) for e in entities] == [(e["entity"], e["start"], e["end"]) for e in expected]
    pairs = post(server, "/v1/classify", {"model": "pair", "input": [["to be", "or not to be"]]})["data"]
    assert set(pairs[0]["scores"]) == {"next", "random"}


def test_rerank_by_cross_encoder_and_by_embedding_cosine(server, dirs):
    query = "a cat on a mat"
    cross = post(server, "/v1/rerank", {"model": "pair", "query": query, "documents": DOCS, "top_n": 3})
    pair = pf.pipeline("text-classification", dirs["pair"], device="cpu")
    want = [row["scores"]["next"] for row in pair([(query, doc) for doc in DOCS])]
    assert [r["index"] for r in cross["results"]] == list(np.argsort(want)[::-1][:3])
    assert cross["results"][0]["relevance_score"] == pytest.approx(max(want), abs=1e-5)
    cosine = post(server, "/v1/rerank", {"model": "encoder", "query": query, "documents": DOCS, "return_documents": False})
    vectors = SentenceEncoder.load(dirs["encoder"]).encode([query, *DOCS])
    assert [r["index"] for r in cosine["results"]] == list(np.argsort(vectors[1:] @ vectors[0])[::-1])
    assert "document" not in cosine["results"][0]


def test_search_equals_search_texts_with_filters(server, dirs):
    from polyformer.embeddings.index import VectorIndex

    got = post(server, "/v1/search", {"index": "docs", "query": ["a kitten", "markets"], "k": 2})["data"]
    index = VectorIndex.open(dirs["index"])
    try:
        want = search_texts(index, SentenceEncoder.load(dirs["encoder"]), ["a kitten", "markets"], k=2)
    finally:
        index.close(save=False)
    assert [[h["id"] for h in q["hits"]] for q in got] == [[h.id for h in row] for row in want]
    filtered = post(server, "/v1/search", {"index": "docs", "query": "a kitten", "k": 4, "filter": {"even": True}})
    assert {h["id"] for h in filtered["data"][0]["hits"]} == {"d0", "d2"}


def test_tokenize_detokenize_models_health_and_metrics(server, client):
    tokens = post(server, "/v1/tokenize", {"model": "chat", "prompt": "café crème"})
    assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] == 96
    assert post(server, "/v1/detokenize", {"model": "chat", "tokens": tokens["tokens"]})["prompt"] == "café crème"
    chat = post(server, "/v1/tokenize", {"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert chat["count"] > 3
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {"chat", "encoder", "sentiment", "ner", "pair"}
    assert "chat" in cards["chat"].capabilities and "classify" in cards["ner"].capabilities
    assert "completions" not in cards["encoder"].capabilities
    assert httpx.get(f"{server.url}/health").json()["status"] == "ready"
    assert server.metric("polyformer_requests_total", endpoint="/v1/tokenize", status="200") >= 2
    assert server.metric("polyformer_prompt_tokens_total", model="encoder") > 0
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_an_api_key_guards_the_v1_routes(dirs):
    settings = ServerSettings(models=[Served("chat", str(dirs["chat"]))], api_key="s3cret")
    with LiveServer(settings) as live:
        body = {"model": "chat", "prompt": "hi", "max_tokens": 2}
        missing = httpx.post(f"{live.url}/v1/completions", json=body)
        wrong = httpx.post(f"{live.url}/v1/completions", json=body, headers={"Authorization": "Bearer nope"})
        assert missing.status_code == wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        keyed = openai.OpenAI(base_url=f"{live.url}/v1", api_key="s3cret", max_retries=0)
        assert keyed.completions.create(model="chat", prompt="hi", max_tokens=2).usage.completion_tokens == 2
        assert httpx.get(f"{live.url}/health").status_code == 200  # load balancers need no key


@pytest.mark.parametrize("args, needles", [
    (["--model", "nope=/no/such/model"], ["/no/such/model", "no such file"]),
    (["--model", "chat=x", "--dtype", "int3"], ["--dtype", "int3"]),
    (["--model", "chat=x", "--max-concurrent", "0"], ["--max-concurrent", "0"]),
    (["--model", "a b=x"], ["a b", "NAME=SOURCE"]),
    ([], ["nothing to serve"]),
    (["--model", "chat=x", "--index", "docs=/no/index"], ["not an index directory"]),
])
def test_serve_command_mistakes_are_one_line_errors(args, needles, tmp_path):
    from cli_runner import assert_one_line_error

    if "--index" in args:
        args = ["--model", f"chat={save_tiny_chat_model(tmp_path / 'chat')}", *args[2:]]
    assert_one_line_error(run_cli("serve", *args), *needles)
