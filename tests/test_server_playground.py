"""The playground page at `/` in headless Chromium, driven over the DevTools protocol.

A person's path through the page: it loads the served models and indexes, a chat message gets a
reply streamed in piece by piece (the same text the API gives), sentence similarity ranks the
sentences, a search lists hits, and a screenshot of the page is a real picture (not blank).
Chromium is Debian's package; the test installs it when it is missing and it can (root with
apt-get, as in CI), and skips with the reason otherwise.
"""

from __future__ import annotations

import httpx
import pytest
from browser import Page, assert_not_blank, chromium
from server_helpers import LiveServer, save_tiny_chat_model
from test_generate import one_thread  # noqa: F401 - tiny models decode fastest on one thread

from polyformer.embeddings import SentenceEncoder
from polyformer.embeddings.documents import Item
from polyformer.embeddings.semantic import build_index
from polyformer.server import Served, ServerSettings

DOCS = ["the cat sat on the mat", "a dog ran in the park", "stock markets fell sharply", "the kitten slept"]


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
    image = page.screenshot()
    image.save(tmp_path / "playground.png")
    assert_not_blank(image)
