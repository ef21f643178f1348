"""Live servers for the server tests: uvicorn on 127.0.0.1, a free port, started and stopped by the test.

`LiveServer` runs the app in a thread of the test process (fast, and the test can look at its
engines); `ServerProcess` runs `polyformer serve` as a subprocess (for signals). Both wait for
`/health` to answer 200 before a test talks to them, and never contact anything but loopback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import torch
import uvicorn

import polyformer as pf
from polyformer.config import preset
from polyformer.models import PolyformerModel
from polyformer.server import ServerSettings, create_app
from polyformer.server.runner import bind

STARTUP_SECONDS = 120


def save_tiny_chat_model(directory: Path) -> Path:
    """The tiny random GPT with a chat-template BPE tokenizer of the generation tests, as a folder."""
    from test_generate_pipeline import tiny_chat_pipeline

    pipe = tiny_chat_pipeline()
    pf.save(pipe.model, directory)
    pipe.tokenizer.save(directory)
    return directory


def save_tiny_classifier(directory: Path, tokenizer_dir: Path, head: str, labels: list[str], extra: dict | None = None) -> Path:
    """A tiny random BERT with a classification head and MiniLM's tokenizer, as a native folder."""
    from polyformer.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    config = preset("bert-tiny", vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                    intermediate_size=64, max_positions=64, head=head, num_labels=len(labels), labels=labels,
                    classifier_pooling="cls", extra=extra or {})
    pf.save(PolyformerModel(config).eval(), directory)
    tokenizer.save(directory)
    return directory


def wait_healthy(url: str, timeout: float = STARTUP_SECONDS, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become healthy in {timeout} s")


class LiveServer:
    """The app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, settings: ServerSettings) -> None:
        self.app = create_app(settings)
        self.service = self.app.state.service
        self.socket = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_healthy(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics").text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == (f"{name}{{{wanted}}}" if labels else name):
                return float(value)
        return 0.0


class ServerProcess:
    """`polyformer serve ... --port 0` as a subprocess; the port is read from its log."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "polyformer.cli.main", "serve", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._address()
        wait_healthy(self.url, process=self.process)

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def _address(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            for line in self.lines:
                found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if found:
                    return found.group(1)
            if self.process.poll() is not None:
                raise RuntimeError("the server exited early:\n" + "".join(self.lines))
            time.sleep(0.05)
        raise TimeoutError("the server never said where it listens:\n" + "".join(self.lines))

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
