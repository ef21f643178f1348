"""Overload, disconnects, failures and shutdown of a live server (loopback only, bounded work).

- Past `--max-concurrent` in service and `--max-queue` waiting, requests get 429 with Retry-After
  at once — while the admitted ones are still running — and the admitted ones complete.
- A client that disconnects mid-stream or mid-request has its row cancelled: the slot is free
  again in /metrics, and the next request is served.
- A request that fails inside the engine gets a 500 alone; the others complete, /health stays 200.
- While the models load, /health and the model endpoints answer 503; once loaded, 200.
- SIGTERM (a `polyformer serve` subprocess): new requests get 503, the stream in flight runs to
  its end, the process exits 0.

The decode steps of the in-process servers are slowed (a sleep per step) so requests stay in
flight long enough to overlap; the subprocess serves a larger random model for the same reason.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from server_helpers import LiveServer, ServerProcess, save_tiny_chat_model
from test_generate import one_thread  # noqa: F401 - tiny models decode fastest on one thread

import polyformer as pf
from polyformer.config import preset
from polyformer.models import PolyformerModel
from polyformer.server import Served, ServerSettings

STEP_SECONDS = 0.02
LONG = {"model": "chat", "prompt": "the cat sat", "max_tokens": 60, "temperature": 0}


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    directory = save_tiny_chat_model(tmp_path_factory.mktemp("limits") / "chat")
    tokenizer = pf.load_tokenizer(directory)
    ends = {tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>"), tokenizer.eos_token_id}
    LONG["logit_bias"] = {str(i): -100 for i in ends if i is not None}  # never EOS: requests run to max_tokens
    return directory


def slowed(live: LiveServer) -> LiveServer:
    """Make every decode step of the chat model take at least STEP_SECONDS."""
    steps = live.service.models["chat"].engine.steps
    step = steps.step

    def slow_step(*args, **kwargs):
        time.sleep(STEP_SECONDS)
        return step(*args, **kwargs)

    steps.step = slow_step
    return live


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_overload_sheds_with_429_while_admitted_requests_complete(chat_dir):
    settings = ServerSettings(models=[Served("chat", str(chat_dir))], max_concurrent=1, max_queue=1)
    with LiveServer(settings) as live:
        slowed(live)
        url = f"{live.url}/v1/completions"
        with ThreadPoolExecutor(2) as pool:
            admitted = [pool.submit(httpx.post, url, json=LONG, timeout=60)]
            assert wait_for(lambda: live.service.admission.running == 1)
            admitted.append(pool.submit(httpx.post, url, json=LONG, timeout=60))
            assert wait_for(lambda: live.service.admission.waiting == 1)
            shed = [httpx.post(url, json=LONG, timeout=60) for _ in range(3)]
            still_running = not admitted[0].done()
            answers = [future.result() for future in admitted]
        assert still_running  # the refusals came back while the first request was still decoding
        for response in shed:
            assert response.status_code == 429 and response.headers["Retry-After"] == "1"
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
        assert [a.status_code for a in answers] == [200, 200]
        assert [a.json()["usage"]["completion_tokens"] for a in answers] == [60, 60]
        assert live.metric("polyformer_requests_total", endpoint="/v1/completions", status="429") == 3


def test_a_disconnected_client_frees_its_slot(chat_dir):
    with LiveServer(ServerSettings(models=[Served("chat", str(chat_dir))], max_concurrent=2)) as live:
        slowed(live)
        url = f"{live.url}/v1/completions"
        running = lambda: live.metric("polyformer_generation_rows_running", model="chat")  # noqa: E731
        with httpx.Client(timeout=60) as client:
            with client.stream("POST", url, json={**LONG, "stream": True, "max_tokens": 90}) as stream:
                lines = stream.iter_lines()
                next(lines)  # the first event: the row is decoding
                assert wait_for(lambda: running() == 1)
            del lines
        assert wait_for(lambda: running() == 0 and live.service.models["chat"].engine.steps.in_use() == 0)
        with pytest.raises(httpx.ReadTimeout):  # a non-streaming request given up by its client
            httpx.post(url, json={**LONG, "max_tokens": 90}, timeout=0.5)
        assert wait_for(lambda: live.metric("polyformer_generation_cancelled_total", model="chat") == 2)
        assert wait_for(lambda: running() == 0)
        after = httpx.post(url, json={**LONG, "max_tokens": 5}, timeout=60)
        assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 5


def test_a_failing_request_ends_alone_and_the_server_stays_healthy(chat_dir):
    with LiveServer(ServerSettings(models=[Served("chat", str(chat_dir))], max_concurrent=4)) as live:
        engine = live.service.models["chat"].engine
        poisoned = engine.tokenizer.encode("café crème")
        next_token = engine._next_token

        def failing(row, logits):  # a fault inside the loop for one prompt only
            if row.spec.prompt_ids == poisoned:
                raise RuntimeError("injected fault")
            return next_token(row, logits)

        engine._next_token = failing
        url = f"{live.url}/v1/completions"
        prompts = ["the cat sat", "café crème", "hello there"]
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda p: httpx.post(url, json={**LONG, "prompt": p, "max_tokens": 20}, timeout=60),
                                    prompts))
        assert [a.status_code for a in answers] == [200, 500, 200]
        assert "injected fault" in answers[1].json()["error"]["message"]
        assert httpx.get(f"{live.url}/health").status_code == 200
        assert httpx.post(url, json={**LONG, "max_tokens": 3}, timeout=60).status_code == 200


@pytest.fixture(scope="module")
def slow_chat_dir(tmp_path_factory, chat_dir):
    """A random GPT large enough (hidden 384, 6 layers) that a 300-token stream takes a while."""
    tokenizer = pf.load_tokenizer(chat_dir)
    torch.manual_seed(0)
    config = preset("gpt-tiny", vocab_size=tokenizer.vocab_size, hidden_size=384, num_layers=6, num_heads=6,
                    max_positions=512, eos_token_id=None)
    directory = tmp_path_factory.mktemp("slow") / "chat"
    pf.save(PolyformerModel(config).eval(), directory)
    tokenizer.save(directory)
    return directory


def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_zero(slow_chat_dir):
    server = ServerProcess("--model", f"chat={slow_chat_dir}", "--threads", "1", "--log-level", "warning")
    try:
        body = {**LONG, "max_tokens": 300, "stream": True, "stream_options": {"include_usage": True}}
        events: list[str] = []
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=120) as stream:
            lines = stream.iter_lines()
            events.append(next(line for line in lines if line))
            server.terminate()
            refused = httpx.post(f"{server.url}/v1/completions", json={**LONG, "max_tokens": 2}, timeout=30)
            health = httpx.get(f"{server.url}/health", timeout=30)
            events.extend(line for line in lines if line)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        assert health.status_code == 503
        assert events[-1] == "data: [DONE]"
        usage = json.loads(events[-2].removeprefix("data: "))["usage"]
        assert usage["completion_tokens"] == 300  # the stream in flight ran to its end
        assert server.wait(60) == 0
    finally:
        server.kill()


def test_health_is_503_while_models_load_then_200(chat_dir, monkeypatch):
    from polyformer.server import service as service_module

    release = threading.Event()
    load_model = service_module.load_model

    def slow_load(*args, **kwargs):
        release.wait(60)
        return load_model(*args, **kwargs)

    monkeypatch.setattr(service_module, "load_model", slow_load)
    live = LiveServer(ServerSettings(models=[Served("chat", str(chat_dir))]))
    live.thread.start()
    try:
        assert wait_for(lambda: _status(f"{live.url}/health") == 503)
        assert httpx.get(f"{live.url}/health").json()["status"] == "loading"
        early = httpx.post(f"{live.url}/v1/completions", json={**LONG, "max_tokens": 2})
        assert early.status_code == 503 and early.json()["error"]["code"] == "loading"
        release.set()
        assert wait_for(lambda: _status(f"{live.url}/health") == 200)
        assert httpx.post(f"{live.url}/v1/completions", json={**LONG, "max_tokens": 2}).status_code == 200
    finally:
        release.set()
        live.__exit__(None, None, None)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None
