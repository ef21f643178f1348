"""`polyformer serve` under load on CPU: continuous batching, dynamic batching, HTTP overhead.

One `polyformer serve` subprocess (SmolLM2-135M-Instruct and all-MiniLM-L6-v2, `--threads`
torch threads) on a free loopback port; the clients are asyncio httpx tasks in this process.
Every figure comes from the same run:

- generation: one streaming client alone, then `clients` concurrent streaming clients, each
  making `requests_per_client` completions of exactly `new_tokens` tokens (end tokens biased
  away, so every request does the same work). Aggregate generated tokens/s of each, their ratio
  (continuous batching, target >= 4x at 16 clients), and time to first token p50 / p95;
- embeddings: `embed_clients` concurrent clients, each sending one sentence per request until
  `sentences` Rotten Tomatoes snippets are embedded, against `SentenceEncoder.encode` of the
  same snippets offline in this process with the same thread count (target >= 70%);
- HTTP overhead: the median round trip of `/v1/tokenize` on a short text, and of a one-sentence
  embedding minus the same embedding computed in-process;
- the slot KV cache's decode step against gathering per-row caches (`benchmarks/slot_cache.py`);
- when `llama-cpp-python[server]` is installed, the same generation load against its OpenAI
  server on the same GGUF file (otherwise reported as skipped).

    python -m benchmarks.serve_bench [--quick]     (or python -m benchmarks.run --only serve)
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import httpx

from polyformer.bench.timing import log

MODEL, ENCODER = "SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class ServeSettings:
    clients: int = 16
    requests_per_client: int = 2
    new_tokens: int = 64
    embed_clients: int = 32
    sentences: int = 512
    overhead_requests: int = 50
    threads: int = 2


def settings_for(quick: bool, threads: int) -> ServeSettings:
    """The full run, or a smoke run with few clients, tokens and sentences."""
    if quick:
        return ServeSettings(clients=4, requests_per_client=1, new_tokens=8, embed_clients=8, sentences=64,
                             overhead_requests=10, threads=threads)
    return ServeSettings(threads=threads)


def start_server(args: list[str], ready_path: str = "/health", timeout: float = 600) -> tuple[subprocess.Popen, str]:
    """A server subprocess and its base URL, once `ready_path` answers 200."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline, url, lines = time.monotonic() + timeout, None, []
    while url is None and time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line and process.poll() is not None:
            raise RuntimeError("server exited:\n" + "".join(lines))
        lines.append(line)
        found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if found and ("listening" in line.lower() or "running on" in line.lower()):
            url = found.group(1)
    while url is not None and time.monotonic() < deadline:
        try:
            if httpx.get(url + ready_path, timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise TimeoutError("the server did not become ready:\n" + "".join(lines))


async def stream_one(client: httpx.AsyncClient, url: str, body: dict) -> tuple[float, int]:
    """(time to first text, completion tokens) of one streamed completion."""
    started, first, tokens = time.perf_counter(), None, 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("choices") and event["choices"][0].get("text") and first is None:
                first = time.perf_counter() - started
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    return first or 0.0, tokens


async def generation_load(url: str, model: str, clients: int, requests: int, body: dict) -> dict:
    """`clients` concurrent clients, `requests` sequential streamed completions each."""
    ttfts: list[float] = []
    tokens = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        for _ in range(requests):
            ttft, produced = await stream_one(client, url, {**body, "model": model})
            ttfts.append(ttft)
            tokens += produced

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients + 4)) as client:
        await stream_one(client, url, {**body, "model": model, "max_tokens": 2})  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ttfts.sort()
    return {"clients": clients, "requests": clients * requests, "tokens": tokens, "seconds": elapsed,
            "tokens_per_s": tokens / elapsed, "ttft_p50_ms": 1000 * statistics.median(ttfts),
            "ttft_p95_ms": 1000 * ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))]}


async def embedding_load(url: str, texts: list[str], clients: int) -> dict:
    queue = list(texts)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while queue:
            text = queue.pop()
            response = await client.post(f"{url}/v1/embeddings", json={"model": "minilm", "input": text,
                                                                         "encoding_format": "base64"})
            response.raise_for_status()

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients + 4)) as client:
        await client.post(f"{url}/v1/embeddings", json={"model": "minilm", "input": texts[:8]})  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"clients": clients, "sentences": len(texts), "seconds": elapsed, "sentences_per_s": len(texts) / elapsed}


def round_trips(url: str, path: str, body: dict, count: int) -> float:
    """Median milliseconds of `count` sequential requests over one keep-alive connection."""
    with httpx.Client(timeout=60) as client:
        client.post(url + path, json=body).raise_for_status()
        times = []
        for _ in range(count):
            started = time.perf_counter()
            client.post(url + path, json=body).raise_for_status()
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def offline_encode(texts: list[str], threads: int) -> dict:
    import torch

    from polyformer.embeddings import SentenceEncoder

    torch.set_num_threads(threads)
    encoder = SentenceEncoder.load(ENCODER)
    encoder.encode(texts[:64])
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        encoder.encode(texts)
        runs.append(time.perf_counter() - started)
    one = texts[0]
    single = []
    for _ in range(20):
        started = time.perf_counter()
        encoder.encode([one])
        single.append(time.perf_counter() - started)
    return {"sentences_per_s": len(texts) / statistics.median(runs), "one_sentence_ms": 1000 * statistics.median(single)}


def generation_body(settings: ServeSettings, model_path) -> dict:
    from polyformer.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    ends = {tokenizer.eos_token_id, tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")}
    return {"prompt": PROMPT, "max_tokens": settings.new_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "logit_bias": {str(i): -100 for i in ends if i is not None}}


def llama_cpp(settings: ServeSettings, model_path, body: dict) -> dict:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("sse_starlette") is None:
        return {"skipped": "llama-cpp-python[server] is not installed"}
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process, url = start_server([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_threads", str(settings.threads),
                                 "--n_ctx", "2048"], ready_path="/v1/models")
    try:
        alone = asyncio.run(generation_load(url, "smol", 1, settings.requests_per_client, body))
        together = asyncio.run(generation_load(url, "smol", settings.clients, settings.requests_per_client, body))
    finally:
        process.terminate()
        process.wait(30)
    return {"alone": alone, "concurrent": together, "ratio": together["tokens_per_s"] / alone["tokens_per_s"]}


def run(settings: ServeSettings) -> dict:
    from polyformer.data import catalog
    from polyformer.data.readers import read_rotten_tomatoes

    gguf, texts = catalog.fetch(MODEL), [row["text"] for row in read_rotten_tomatoes()[: settings.sentences]]
    body = generation_body(settings, gguf)
    from benchmarks import slot_cache

    cache = slot_cache.run(slot_cache.SlotCacheSettings(threads=settings.threads, repeats=3 if settings.clients > 4 else 1))
    offline = offline_encode(texts, settings.threads)
    log(f"offline encode: {offline['sentences_per_s']:.1f} sentences/s")
    process, url = start_server([sys.executable, "-m", "polyformer.cli.main", "serve", "--port", "0", "--threads",
                                 str(settings.threads), "--max-concurrent", str(max(settings.clients, settings.embed_clients)),
                                 "--max-queue", "256", "--log-level", "warning",
                                 "--model", f"smol={gguf}", "--model", f"minilm={ENCODER}"])
    try:
        alone = asyncio.run(generation_load(url, "smol", 1, settings.requests_per_client, body))
        log(f"one client: {alone['tokens_per_s']:.1f} tok/s")
        together = asyncio.run(generation_load(url, "smol", settings.clients, settings.requests_per_client, body))
        log(f"{settings.clients} clients: {together['tokens_per_s']:.1f} tok/s")
        served = asyncio.run(embedding_load(url, texts, settings.embed_clients))
        tokenize_ms = round_trips(url, "/v1/tokenize", {"model": "minilm", "prompt": "hello there"}, settings.overhead_requests)
        embed_ms = round_trips(url, "/v1/embeddings", {"model": "minilm", "input": texts[0]}, settings.overhead_requests)
    finally:
        process.terminate()
        process.wait(60)
    return {
        "settings": asdict(settings),
        "generation": {"alone": alone, "concurrent": together, "ratio": together["tokens_per_s"] / alone["tokens_per_s"]},
        "embeddings": {"offline": offline, "served": served,
                       "ratio": served["sentences_per_s"] / offline["sentences_per_s"]},
        "http_overhead_ms": {"tokenize_round_trip": tokenize_ms, "one_sentence_embedding": embed_ms,
                             "over_in_process_embedding": embed_ms - offline["one_sentence_ms"]},
        "llama_cpp": llama_cpp(settings, gguf, body),
        "slot_cache": cache,
    }


def rows(record: dict) -> list[list[object]]:
    gen, emb, http = record["generation"], record["embeddings"], record["http_overhead_ms"]
    out = [
        [f"serve: {gen['concurrent']['clients']} streaming clients vs 1 (SmolLM2, {record['settings']['new_tokens']} tokens)",
         f"{gen['concurrent']['tokens_per_s']:.1f} tok/s, TTFT p50 {gen['concurrent']['ttft_p50_ms']:.0f} ms / "
         f"p95 {gen['concurrent']['ttft_p95_ms']:.0f} ms",
         f"{gen['alone']['tokens_per_s']:.1f} tok/s alone, TTFT p50 {gen['alone']['ttft_p50_ms']:.0f} ms",
         f"{gen['ratio']:.2f}x", "target >= 4x"],
        [f"serve: {emb['served']['clients']} one-sentence embedding clients (MiniLM)",
         f"{emb['served']['sentences_per_s']:.1f} sent/s", f"{emb['offline']['sentences_per_s']:.1f} sent/s offline encode",
         f"{emb['ratio']:.0%}", "target >= 70%"],
        ["serve: HTTP overhead of one small request", f"tokenize {http['tokenize_round_trip']:.1f} ms round trip",
         f"one-sentence embedding {http['one_sentence_embedding']:.1f} ms vs {emb['offline']['one_sentence_ms']:.1f} ms "
         "in-process", f"+{http['over_in_process_embedding']:.1f} ms", ""],
    ]
    from benchmarks import slot_cache

    out += slot_cache.rows(record["slot_cache"])
    llama = record["llama_cpp"]
    if "skipped" not in llama:
        out.append(["serve: llama.cpp server, same load", f"{llama['concurrent']['tokens_per_s']:.1f} tok/s",
                    f"{llama['alone']['tokens_per_s']:.1f} tok/s alone", f"{llama['ratio']:.2f}x", "llama-cpp-python"])
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    from polyformer.bench.timing import markdown_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer clients, tokens and sentences")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    record = run(settings_for(args.quick, args.threads))
    print(markdown_table(["work", "polyformer", "reference", "ratio", "note"], rows(record)))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
