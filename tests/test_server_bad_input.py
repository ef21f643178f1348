"""The bad-input corpus: every malformed or oversized request gets a 4xx with the OpenAI error body.

Each payload is sent raw (httpx) to a live server; the answer must be the expected 4xx status with
`{"error": {"message", "type", "param", "code"}}` (never FastAPI's 422 `detail` body, never a 5xx),
name the field at fault where there is one, and leave the server healthy for the next request.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from server_helpers import LiveServer, save_tiny_chat_model
from test_generate import one_thread  # noqa: F401 - tiny models decode fastest on one thread

from polyformer.server import Served, ServerSettings

C, E = "/v1/completions", "/v1/chat/completions"
OK_CHAT = [{"role": "user", "content": "hi"}]


def completion(**fields) -> dict:
    return {"model": "chat", "prompt": "the cat", **fields}


def chat(**fields) -> dict:
    return {"model": "chat", "messages": OK_CHAT, **fields}


def nested(depth: int) -> bytes:
    return b'{"model": "chat", "prompt": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


# (name, path, body: dict | bytes | None, status, param named in the error or None)
CORPUS = [
    ("empty prompt", C, completion(prompt=""), 400, "prompt"),
    ("list of one empty prompt", C, completion(prompt=[""]), 400, "prompt"),
    ("empty prompt list", C, completion(prompt=[]), 400, "prompt"),
    ("invalid UTF-8", C, b'{"model": "chat", "prompt": "\xff\xfe\xfd"}', 400, None),
    ("a lone surrogate escape", C, b'{"model": "chat", "prompt": "a\\ud800b"}', 400, None),
    ("not JSON", C, b"hello there", 400, None),
    ("empty body", C, b"", 400, None),
    ("a JSON list", C, b"[1, 2, 3]", 400, None),
    ("a JSON string", C, b'"the cat"', 400, None),
    ("max_tokens as a string", C, completion(max_tokens="10"), 400, "max_tokens"),
    ("max_tokens as a float", C, completion(max_tokens=10.0), 400, "max_tokens"),
    ("temperature as a word", C, completion(temperature="hot"), 400, "temperature"),
    ("prompt as a number", C, completion(prompt=123), 400, "prompt"),
    ("stream as a string", C, completion(stream="yes"), 400, "stream"),
    ("huge max_tokens", C, completion(max_tokens=10**12), 400, "max_tokens"),
    ("zero max_tokens", C, completion(max_tokens=0), 400, "max_tokens"),
    ("negative max_tokens", C, completion(max_tokens=-5), 400, "max_tokens"),
    ("prompt + max_tokens over the context", C, completion(max_tokens=95), 400, "max_tokens"),
    ("n = 0", C, completion(n=0), 400, "n"),
    ("n = 1000", C, completion(n=1000), 400, "n"),
    ("temperature -1", C, completion(temperature=-1), 400, "temperature"),
    ("top_p 2", C, completion(top_p=2), 400, "top_p"),
    ("top_p 0", C, completion(top_p=0), 400, "top_p"),
    ("logit_bias out of the vocabulary", C, completion(logit_bias={"999999": 5}), 400, "logit_bias"),
    ("logit_bias not a number", C, completion(logit_bias={"5": "a lot"}), 400, "logit_bias.5"),
    ("logit_bias key not an id", C, completion(logit_bias={"abc": 1}), 400, "logit_bias"),
    ("logit_bias out of range", C, completion(logit_bias={"5": 1000}), 400, "logit_bias"),
    ("logit_bias key a superscript digit", C, completion(logit_bias={"\u00b2": 1}), 400, "logit_bias"),
    ("too many sequences", C, completion(prompt=["a"] * 20, n=4), 400, "n"),
    ("1,000 stop strings", C, completion(stop=[f"s{i}" for i in range(1000)]), 400, "stop"),
    ("an empty stop string", C, completion(stop=[""]), 400, "stop"),
    ("a 2M-character prompt", C, completion(prompt="a " * 1_000_000), 400, "prompt"),
    ("a body over the size limit", C, completion(prompt="a " * 1_100_000), 413, None),
    ("a 1.5M-character prompt over the context", C, completion(prompt="ab " * 500_000), 400, "prompt"),
    ("token ids out of range", C, completion(prompt=[[5, 99999]]), 400, "prompt"),
    ("negative token ids", C, completion(prompt=[-1, 5]), 400, "prompt"),
    ("a mixed prompt list", C, completion(prompt=["a", 1]), 400, "prompt"),
    ("deeply nested JSON", C, nested(100_000), 400, None),
    ("missing model", C, {"prompt": "the cat"}, 400, "model"),
    ("unknown model", C, completion(model="nope"), 404, "model"),
    ("unknown field", C, completion(temprature=0.5), 400, "temprature"),
    ("negative seed", C, completion(seed=-1), 400, "seed"),
    ("presence_penalty 5", C, completion(presence_penalty=5), 400, "presence_penalty"),
    ("logprobs 100", C, completion(logprobs=100), 400, "logprobs"),
    ("NaN temperature", C, b'{"model": "chat", "prompt": "x", "temperature": NaN}', 400, "temperature"),
    ("infinite penalty", C, b'{"model": "chat", "prompt": "x", "frequency_penalty": Infinity}', 400, None),
    ("a stream request to a non-generative model", C, completion(model="encoder", stream=True), 400, "model"),
    ("unknown role", E, chat(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages.0.role"),
    ("missing messages", E, {"model": "chat"}, 400, "messages"),
    ("no messages", E, chat(messages=[]), 400, "messages"),
    ("content a number", E, chat(messages=[{"role": "user", "content": 5}]), 400, "messages.0.content"),
    ("a message without a role", E, chat(messages=[{"content": "hi"}]), 400, "messages.0.role"),
    ("an image part", E, chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]),
     400, "messages.0.content"),
    ("chat with a model without a template", E, chat(model="encoder"), 400, "model"),
    ("chat top_logprobs 50", E, chat(logprobs=True, top_logprobs=50), 400, "top_logprobs"),
    ("10,000 embedding inputs", "/v1/embeddings", {"model": "encoder", "input": ["a"] * 10_000}, 400, "input"),
    ("no embedding inputs", "/v1/embeddings", {"model": "encoder", "input": []}, 400, "input"),
    ("an empty embedding input", "/v1/embeddings", {"model": "encoder", "input": [""]}, 400, "input"),
    ("an unknown encoding", "/v1/embeddings", {"model": "encoder", "input": "a", "encoding_format": "hex"}, 400,
     "encoding_format"),
    ("zero dimensions", "/v1/embeddings", {"model": "encoder", "input": "a", "dimensions": 0}, 400, "dimensions"),
    ("too many dimensions", "/v1/embeddings", {"model": "encoder", "input": "a", "dimensions": 10**6}, 400, "dimensions"),
    ("embedding token ids out of range", "/v1/embeddings", {"model": "encoder", "input": [[10**7]]}, 400, "input"),
    ("classify with a generative model", "/v1/classify", {"model": "chat", "input": "a"}, 400, "model"),
    ("rerank without documents", "/v1/rerank", {"model": "encoder", "query": "a", "documents": []}, 400, "documents"),
    ("search an unknown index", "/v1/search", {"index": "nope", "query": "a"}, 404, "index"),
    ("tokenize prompt and messages", "/v1/tokenize", {"model": "chat", "prompt": "a", "messages": OK_CHAT}, 400, "prompt"),
    ("detokenize ids out of range", "/v1/detokenize", {"model": "chat", "tokens": [10**6]}, 400, "tokens"),
    ("an unknown route", "/v1/nothing-here", {}, 404, None),
    ("GET on a POST route", C, None, 405, None),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_sentence_encoder_dir):
    chat_dir = save_tiny_chat_model(tmp_path_factory.mktemp("bad-input") / "chat")
    models = [Served("chat", str(chat_dir)), Served("encoder", str(tiny_sentence_encoder_dir))]
    with LiveServer(ServerSettings(models=models, max_concurrent=2)) as live:
        yield live


def test_the_corpus_is_large_and_distinct():
    assert len(CORPUS) >= 40 and len({name for name, *_ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("name, path, body, status, param", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_gets_a_4xx_error_body_and_the_server_stays_healthy(server, name, path, body, status, param):
    url = f"{server.url}{path}"
    if body is None:
        response = httpx.get(url, timeout=60)
    else:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = httpx.post(url, content=raw, headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "detail" not in response.json()
    if param is not None:
        assert error["param"] == param, error
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_a_declared_oversized_body_is_refused_before_it_is_sent(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(f"POST {C} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {10 * 1024 * 1024}\r\n\r\n{{}}".encode())
        chunks = []
        while chunk := connection.recv(65536):  # the server closes the connection after its answer
            chunks.append(chunk)
        answer = b"".join(chunks).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"code": "request_too_large"' in answer or '"code":"request_too_large"' in answer
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_errors_name_both_numbers_of_a_context_overflow(server):
    response = httpx.post(f"{server.url}{C}", json=completion(max_tokens=95))
    message = response.json()["error"]["message"]
    assert "max_tokens (95)" in message and "context of 96" in message
    assert response.json()["error"]["code"] == "context_length_exceeded"
