"""Real weights through a live server: SmolLM2-135M-Instruct (GGUF) and all-MiniLM-L6-v2.

Concurrent greedy completions and a chat reply of SmolLM2 — decoded in one continuous batch —
must equal, token for token, what `polyformer generate`'s code path (`TextGenerationPipeline`)
gives each prompt alone on the same weights; MiniLM's and SmolLM2's embeddings must match
`SentenceEncoder.encode` at cosine >= 0.9999. The slow test runs the real `polyformer generate`
command in a fresh process for the same comparison.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cli_runner import run_cli_process
from server_helpers import LiveServer

from polyformer.embeddings import SentenceEncoder
from polyformer.server import Served, ServerSettings

openai = pytest.importorskip("openai")

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
TEXTS = ["A gripping thriller with a twist.", "The stock market fell today.", "Paris is the capital of France."]
MAX_TOKENS = 10


@pytest.fixture(scope="module")
def server(smollm2_gguf, minilm_dir):
    models = [Served("smol", str(smollm2_gguf)), Served("minilm", str(minilm_dir))]
    with LiveServer(ServerSettings(models=models, max_concurrent=4)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)


def greedy_batch(client) -> list[str]:
    def complete(prompt: str) -> str:
        return client.completions.create(model="smol", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0).choices[0].text

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        return list(pool.map(complete, PROMPTS))


def test_concurrent_greedy_completions_and_chat_equal_the_pipeline_alone(server, client):
    pipe = server.service.models["smol"].pipe
    got = greedy_batch(client)
    assert got == [pipe.complete([p], max_new_tokens=MAX_TOKENS)[0].text for p in PROMPTS]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    reply = client.chat.completions.create(model="smol", messages=messages, max_tokens=MAX_TOKENS, temperature=0)
    assert reply.choices[0].message.content == pipe.chat(messages, max_new_tokens=MAX_TOKENS)
    assert "Paris" in reply.choices[0].message.content


def test_embeddings_equal_the_sentence_encoder(server, client, minilm_dir):
    want = SentenceEncoder.load(minilm_dir).encode(TEXTS)
    got = np.array([d.embedding for d in client.embeddings.create(model="minilm", input=TEXTS).data])
    assert got.shape == (3, 384) and (np.sum(got * want, axis=1) >= 0.9999).all()
    served = server.service.models["smol"]
    last_token = SentenceEncoder(served.model, served.tokenizer, pooling="last").encode(TEXTS)
    got = np.array([d.embedding for d in client.embeddings.create(model="smol", input=TEXTS).data])
    assert (np.sum(got * last_token, axis=1) >= 0.9999).all()


@pytest.mark.slow
def test_concurrent_greedy_completions_equal_the_generate_command(server, client, smollm2_gguf):
    got = greedy_batch(client)
    for prompt, text in zip(PROMPTS, got):
        result = run_cli_process("generate", "--model", smollm2_gguf, "--prompt", prompt,
                                 "--max-new-tokens", str(MAX_TOKENS), "--dtype", "float32")  # the server's default
        assert result.returncode == 0, result.stderr
        assert result.stdout == text + "\n"
