// The playground: a streamed chat, sentence similarity and search, over the server's own API.
// Plain browser JavaScript (fetch + ReadableStream for the server-sent events), no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];

function headers() {
  const key = $("api-key").value.trim();
  localStorage.setItem("polyformer-api-key", key);
  const h = { "Content-Type": "application/json" };
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, body) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
  return data;
}

function fill(select, names) {
  select.innerHTML = "";
  for (const name of names) select.add(new Option(name, name));
  select.disabled = names.length === 0;
  if (!names.length) select.add(new Option("(none served)", ""));
}

async function load() {
  $("api-key").value = localStorage.getItem("polyformer-api-key") || "";
  const status = $("status");
  try {
    const health = await (await fetch("/health")).json();
    if (health.status !== "ready") {
      status.textContent = "server " + health.status + "…";
      setTimeout(load, 1000);
      return;
    }
    const models = (await (await fetch("/v1/models", { headers: headers() })).json()).data || [];
    const able = (kind) => models.filter((m) => m.capabilities.includes(kind)).map((m) => m.id);
    fill($("chat-model"), able("chat"));
    const encoders = models.filter((m) => !m.capabilities.includes("completions")).map((m) => m.id);
    fill($("similarity-model"), [...encoders, ...able("embeddings").filter((id) => !encoders.includes(id))]);
    fill($("search-index"), health.indexes);
    status.textContent = `ready: ${models.length} model(s), ${health.indexes.length} index(es)`;
    status.className = "status ok";
  } catch (error) {
    status.textContent = "cannot reach the server: " + error.message;
    status.className = "status bad";
  }
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("chat-log").appendChild(div);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return div;
}

// Read an SSE body: calls onEvent(parsed JSON) per `data:` line until `data: [DONE]`.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  const model = $("chat-model").value;
  if (!text || !model) return;
  const log = $("chat-log");
  $("chat-input").value = "";
  $("chat-send").disabled = true;
  log.dataset.state = "streaming";
  bubble("user", text);
  history.push({ role: "user", content: text });
  const reply = bubble("assistant", "");
  let chunks = 0;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ model, messages: history, stream: true,
                             temperature: Number($("chat-temperature").value),
                             max_tokens: Number($("chat-max-tokens").value) }),
    });
    if (!response.ok) throw new Error((await response.json()).error.message);
    await readEvents(response, (data) => {
      if (data.error) throw new Error(data.error.message);
      const delta = data.choices && data.choices[0] && data.choices[0].delta;
      if (delta && delta.content) {
        reply.textContent += delta.content;
        chunks += 1;
        log.dataset.chunks = String(chunks);
        log.scrollTop = log.scrollHeight;
      }
    });
    history.push({ role: "assistant", content: reply.textContent });
    log.dataset.state = "done";
  } catch (error) {
    reply.className = "msg error";
    reply.textContent = error.message;
    log.dataset.state = "error";
  } finally {
    $("chat-send").disabled = false;
  }
}

function dot(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

async function compare() {
  const list = $("similarity-results");
  const source = $("similarity-source").value.trim();
  const targets = $("similarity-targets").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (!source || !targets.length) return;
  list.dataset.state = "running";
  try {
    const data = await api("/v1/embeddings", { model: $("similarity-model").value, input: [source, ...targets],
                                               encoding_format: "float" });
    const vectors = data.data.map((d) => d.embedding);
    const rows = targets.map((text, i) => ({ text, score: dot(vectors[0], vectors[i + 1]) }));
    rows.sort((a, b) => b.score - a.score);
    list.innerHTML = "";
    for (const row of rows) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="score">${row.score.toFixed(3)}</span> `;
      li.appendChild(document.createTextNode(row.text));
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.max(0, row.score) * 100 + "%";
      li.appendChild(bar);
      list.appendChild(li);
    }
    list.dataset.state = "done";
  } catch (error) {
    list.innerHTML = "";
    list.appendChild(document.createTextNode(error.message));
    list.dataset.state = "error";
  }
}

async function search(event) {
  event.preventDefault();
  const list = $("search-results");
  const query = $("search-query").value.trim();
  if (!query || !$("search-index").value) return;
  list.dataset.state = "running";
  try {
    const data = await api("/v1/search", { index: $("search-index").value, query, k: Number($("search-k").value) });
    list.innerHTML = "";
    for (const hit of data.data[0].hits) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="score">${hit.score.toFixed(3)}</span> `;
      li.appendChild(document.createTextNode(hit.text));
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = hit.id + " " + JSON.stringify(hit.metadata);
      li.appendChild(meta);
      list.appendChild(li);
    }
    list.dataset.state = "done";
  } catch (error) {
    list.innerHTML = "";
    list.appendChild(document.createTextNode(error.message));
    list.dataset.state = "error";
  }
}

$("chat-form").addEventListener("submit", sendChat);
$("chat-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) sendChat(e);
});
$("chat-clear").addEventListener("click", () => { history.length = 0; $("chat-log").innerHTML = ""; });
$("similarity-run").addEventListener("click", compare);
$("search-form").addEventListener("submit", search);
load();
