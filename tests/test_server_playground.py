"""The playground page at `/` in headless Chromium, driven over the DevTools protocol.

A person's path through the page: it loads the served models and indexes, a chat message gets a
reply streamed in piece by piece (the same text the API gives), sentence similarity ranks the
sentences, a search lists hits, and a screenshot of the page is a real picture (not blank).
Chromium is Debian's package; the test installs it when it is missing and it can (root with
apt-get, as in CI), and skips with the reason otherwise.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from server_helpers import LiveServer, save_tiny_chat_model
from test_generate import one_thread  # noqa: F401 - tiny models decode fastest on one thread

from polyformer.embeddings import SentenceEncoder
from polyformer.embeddings.documents import Item
from polyformer.embeddings.semantic import build_index
from polyformer.server import Served, ServerSettings

websocket = pytest.importorskip("websocket")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1280,900"]
DOCS = ["the cat sat on the mat", "a dog ran in the park", "stock markets fell sharply", "the kitten slept"]


def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and possible."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("headless Chromium is not installed, and installing it needs root and apt-get (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "chromium"]):
        subprocess.run(command, env=env, capture_output=True, timeout=900)
        if shutil.which("chromium"):
            return shutil.which("chromium")  # type: ignore[return-value]
    pytest.skip("Debian's chromium package could not be installed here (apt-get install chromium failed)")


class Page:
    """One Chromium tab over the DevTools protocol (a websocket, one request at a time)."""

    def __init__(self, binary: str, url: str, profile: Path) -> None:
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", url],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._port(profile / "DevToolsActivePort")
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0

    def _port(self, file: Path) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if file.is_file() and file.read_text().strip():
                return int(file.read_text().split()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.1)
        raise TimeoutError(f"never true in the page: {expression}")

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_sentence_encoder_dir):
    root = tmp_path_factory.mktemp("playground")
    encoder = SentenceEncoder.load(tiny_sentence_encoder_dir)
    build_index(root / "index", encoder, [Item(f"d{i}", t) for i, t in enumerate(DOCS)], model=str(tiny_sentence_encoder_dir))
    models = [Served("chat", str(save_tiny_chat_model(root / "chat"))), Served("encoder", str(tiny_sentence_encoder_dir))]
    with LiveServer(ServerSettings(models=models, indexes=[Served("docs", str(root / "index"))])) as live:
        yield live


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    tab = Page(chromium(), f"{server.url}/", tmp_path_factory.mktemp("chromium-profile"))
    try:
        tab.wait("document.getElementById('status')?.className.includes('ok') === true")
        yield tab
    finally:
        tab.close()


def test_a_streamed_chat_reply_appears(page, server):
    page.evaluate("""(() => {
        document.getElementById('chat-temperature').value = '0';
        document.getElementById('chat-max-tokens').value = '16';
        document.getElementById('chat-input').value = 'the cat sat';
        document.getElementById('chat-send').click();
    })()""")
    page.wait("document.getElementById('chat-log').dataset.state === 'done'")
    reply = page.evaluate("document.querySelector('#chat-log .msg.assistant').textContent")
    chunks = int(page.evaluate("document.getElementById('chat-log').dataset.chunks || '0'"))
    api = httpx.post(f"{server.url}/v1/chat/completions", json={
        "model": "chat", "messages": [{"role": "user", "content": "the cat sat"}], "temperature": 0, "max_tokens": 16})
    assert reply == api.json()["choices"][0]["message"]["content"] and reply
    assert chunks > 1  # it arrived in pieces


def test_similarity_and_search_panels_show_results(page):
    page.evaluate("document.getElementById('similarity-run').click()")
    page.wait("document.getElementById('similarity-results').dataset.state === 'done'")
    assert page.evaluate("document.querySelectorAll('#similarity-results li').length") == 3
    page.evaluate("""(() => {
        document.getElementById('search-query').value = 'a kitten';
        document.getElementById('search-run').click();
    })()""")
    page.wait("document.getElementById('search-results').dataset.state === 'done'")
    hits = page.evaluate("[...document.querySelectorAll('#search-results li')].map(li => li.textContent)")
    assert len(hits) == 4 and all(any(doc in hit for doc in DOCS) for hit in hits)


def test_a_screenshot_of_the_page_is_not_blank(page, tmp_path):
    from PIL import Image

    png = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "playground.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size[0] >= 800 and image.size[1] >= 600
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # text, buttons, borders: far from one flat colour
    assert max(count for count, _ in colours) < 0.95 * image.size[0] * image.size[1]
