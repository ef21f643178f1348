"""`polyformer generate` and `polyformer chat` through the CLI: outputs equal the Python API's, bad input is one line."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
from cli_runner import assert_one_line_error, run_cli
from test_generate_pipeline import tiny_chat_pipeline
from test_gguf import needs_accelerate

import polyformer as pf
from polyformer.cli.chat import chat_loop
from polyformer.generation.text_pipeline import TextGenerationPipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random GPT with a chat-template tokenizer, saved as a polyformer folder."""
    pipe = tiny_chat_pipeline()
    directory = tmp_path_factory.mktemp("tiny-chat")
    pf.save(pipe.model, directory)
    pipe.tokenizer.save(directory)
    return directory


@pytest.fixture(scope="module")
def pipe(model_dir) -> TextGenerationPipeline:
    return TextGenerationPipeline.load(model_dir, device="cpu")


def test_prompt_plain_streamed_and_chat(model_dir, pipe):
    args = ["generate", "--model", model_dir, "--prompt", "the cat sat", "--max-new-tokens", "12"]
    plain = run_cli(*args)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == pipe("the cat sat", max_new_tokens=12) + "\n"
    streamed = run_cli(*args, "--stream")
    assert streamed.returncode == 0 and streamed.stdout == plain.stdout
    chat = run_cli(*args, "--chat")
    assert chat.stdout == pipe.chat([{"role": "user", "content": "the cat sat"}], max_new_tokens=12) + "\n"
    sampled = run_cli(*args, "--temperature", "1.0", "--top-k", "20", "--top-p", "0.9", "--seed", "3")
    assert sampled.stdout == pipe("the cat sat", max_new_tokens=12, temperature=1.0, top_k=20, top_p=0.9, seed=3) + "\n"


def test_file_of_prompts_gives_json_lines_in_order(model_dir, pipe, tmp_path):
    rows = [{"id": "a", "text": "the cat sat"}, {"id": 7, "text": "café crème"}, {"text": "hello there"}]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    result = run_cli("generate", "--model", model_dir, "--file", prompts, "--max-new-tokens", "8", "--batch-size", "2",
                     "--stop", "zzz")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["a", 7, 2]
    assert set(lines[0]) == {"id", "prompt", "text", "finish_reason", "new_tokens"}  # one candidate: no list
    completions = pipe.complete([row["text"] for row in rows], max_new_tokens=8)
    assert [line["text"] for line in lines] == [c.text for c in completions]
    assert [line["finish_reason"] for line in lines] == [c.finish_reason for c in completions]
    txt = tmp_path / "prompts.txt"
    txt.write_text("the cat sat\n\ncafé crème\n", encoding="utf-8")
    from_txt = run_cli("generate", "--model", model_dir, "--file", txt, "--max-new-tokens", "8")
    assert [json.loads(line)["text"] for line in from_txt.stdout.splitlines()] == [c.text for c in completions[:2]]


def test_beams_and_samples_print_and_write_every_candidate(model_dir, pipe, tmp_path):
    args = ["generate", "--model", model_dir, "--max-new-tokens", "8"]
    best3 = pipe.complete(["the cat sat"], max_new_tokens=8, num_beams=4, num_return_sequences=3)[0]
    printed = run_cli(*args, "--prompt", "the cat sat", "--num-beams", "4", "--num-return-sequences", "3")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == "".join(f"[{i}] ({c.score:.4f}) {c.text}\n" for i, c in enumerate(best3.candidates, 1))
    assert run_cli(*args, "--prompt", "the cat sat", "--num-beams", "4").stdout == best3.text + "\n"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat sat\ncafé crème\n", encoding="utf-8")
    beams = run_cli(*args, "--file", prompts, "--num-beams", "4", "--num-return-sequences", "3", "--stop", "zzz")
    lines = [json.loads(line) for line in beams.stdout.splitlines()]
    expected = pipe.complete(["the cat sat", "café crème"], max_new_tokens=8, num_beams=4, num_return_sequences=3)
    for line, completion in zip(lines, expected, strict=True):
        assert [c["text"] for c in line["candidates"]] == [c.text for c in completion.candidates]
        assert [c["new_tokens"] for c in line["candidates"]] == [len(c.token_ids) for c in completion.candidates]
        scores = [c["score"] for c in line["candidates"]]
        assert scores == sorted(scores, reverse=True) == pytest.approx([c.score for c in completion.candidates])
        assert (line["text"], line["score"]) == (line["candidates"][0]["text"], scores[0])
    sampled = run_cli(*args, "--file", prompts, "--temperature", "1", "--seed", "3", "--num-return-sequences", "2")
    samples = pipe.complete(["the cat sat", "café crème"], max_new_tokens=8, temperature=1.0, seed=3, num_return_sequences=2)
    lines = [json.loads(line) for line in sampled.stdout.splitlines()]
    assert [[c["text"] for c in line["candidates"]] for line in lines] == [[c.text for c in s.candidates] for s in samples]
    assert all("score" not in c for line in lines for c in line["candidates"])


@needs_accelerate
def test_smollm2_beam_search_from_the_cli_matches_transformers(smollm2_gguf, tmp_path):
    """The 4-best of `generate --num-beams 4` on the SmolLM2 GGUF: transformers' beams, token for token."""
    transformers = pytest.importorskip("transformers")
    prompt = "The capital of France is"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(prompt + "\n", encoding="utf-8")
    result = run_cli("generate", "--model", smollm2_gguf, "--file", prompts, "--num-beams", "4",
                     "--num-return-sequences", "4", "--max-new-tokens", "8", "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    tokenizer = pf.load_tokenizer(smollm2_gguf)
    oracle = transformers.AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name).eval()
    ids = torch.tensor([tokenizer.encode(prompt)])
    eos = oracle.config.eos_token_id
    with torch.inference_mode():
        out = oracle.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=4, num_return_sequences=4,
                              max_new_tokens=8, length_penalty=1.0, early_stopping=False, eos_token_id=eos,
                              pad_token_id=eos, return_dict_in_generate=True, output_scores=True)
    rows = [row[: row.index(eos) + 1] if eos in row else row for row in out.sequences[:, ids.shape[1]:].tolist()]
    assert [c["text"] for c in line["candidates"]] == [tokenizer.decode(row) for row in rows]
    assert [c["new_tokens"] for c in line["candidates"]] == [len(row) for row in rows]
    assert [c["score"] for c in line["candidates"]] == pytest.approx(out.sequences_scores.tolist(), abs=1e-3)
    assert line["text"] == tokenizer.decode(rows[0])


@pytest.mark.parametrize("extra, needles", [
    (["--max-new-tokens", "0"], ["max_new_tokens", "0"]),
    (["--temperature", "-1"], ["temperature", "-1"]),
    (["--top-p", "0"], ["top_p"]),
    (["--top-p", "1.5"], ["top_p", "1.5"]),
    (["--stop-token-id", "99999"], ["99999", "outside the vocabulary"]),
    (["--max-new-tokens", "200"], ["context of 96"]),
    (["--num-beams", "2", "--stream"], ["--num-beams 1"]),
    (["--temperature", "1", "--num-return-sequences", "2", "--stream"], ["--num-return-sequences 1"]),
    (["--num-return-sequences", "2"], ["num_return_sequences=2 with greedy"]),
    (["--num-beams", "2", "--num-return-sequences", "3"], ["exceeds num_beams (2)"]),
    (["--dtype", "int3"], ["int3", "float32, bfloat16, int8"]),
])
def test_bad_options_are_one_line_errors(model_dir, extra, needles):
    assert_one_line_error(run_cli("generate", "--model", model_dir, "--prompt", "the cat", *extra), *needles)


def test_bad_prompts_are_one_line_errors(model_dir, tmp_path):
    assert_one_line_error(run_cli("generate", "--model", model_dir, "--prompt", ""), "--prompt is empty")
    assert_one_line_error(run_cli("generate", "--model", model_dir, "--prompt", "the cat " * 60), "longer than the model's context")
    assert_one_line_error(run_cli("generate", "--model", model_dir), "exactly one of --prompt")
    assert_one_line_error(run_cli("generate", "--model", model_dir, "--file", tmp_path / "none.jsonl"), "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": ""}\n', encoding="utf-8")
    assert_one_line_error(run_cli("generate", "--model", model_dir, "--file", bad), "bad.jsonl:2", "'text'")
    assert_one_line_error(run_cli("generate", "--model", tmp_path / "missing", "--prompt", "hi"), "missing")


def test_chat_repl_over_stdin_keeps_history_and_resets(model_dir, pipe, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello there\n\n/unknown\nthe cat sat\n/reset\nthe cat sat\n/exit\nnever read\n"))
    result = run_cli("chat", "--model", model_dir, "--max-new-tokens", "10")
    assert result.returncode == 0, result.stderr
    first = pipe.chat([{"role": "user", "content": "hello there"}], max_new_tokens=10)
    history = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": first.strip()},
               {"role": "user", "content": "the cat sat"}]
    second = pipe.chat(history, max_new_tokens=10)
    fresh = pipe.chat([{"role": "user", "content": "the cat sat"}], max_new_tokens=10)
    assert result.stdout == f"{first}\n{second}\n{fresh}\n"
    assert "unknown command /unknown" in result.stderr and "(conversation reset)" in result.stderr


class _Interrupting:
    """A pipeline whose second reply is interrupted (Ctrl-C) after one piece."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, 0
        self.tokenizer, self.chat_prompt, self.context_length = pipe.tokenizer, pipe.chat_prompt, pipe.context_length

    def chat_stream(self, messages, **options):
        self.calls += 1
        if self.calls == 2:
            yield "partial"
            raise KeyboardInterrupt
        yield from self.pipe.chat_stream(messages, **options)


def test_chat_survives_ctrl_c_in_a_reply_and_ends_on_ctrl_c_at_the_prompt(pipe):
    def lines():
        yield "hello there"
        yield "the cat sat"
        yield "the cat sat"
        raise KeyboardInterrupt

    out, err = io.StringIO(), io.StringIO()
    fake = _Interrupting(pipe)
    replies = chat_loop(fake, lines(), out, err, {"max_new_tokens": 6})
    assert replies == 2 and "interrupted" in err.getvalue()
    first = pipe.chat([{"role": "user", "content": "hello there"}], max_new_tokens=6)
    third = pipe.chat([{"role": "user", "content": "hello there"}, {"role": "assistant", "content": first.strip()},
                       {"role": "user", "content": "the cat sat"}], max_new_tokens=6)  # the interrupted turn is gone
    assert out.getvalue() == f"{first}\npartial\n{third}\n"


def test_chat_drops_the_oldest_exchanges_to_fit_the_context(pipe):
    out, err = io.StringIO(), io.StringIO()
    lines = iter(f"the cat sat on the mat number {i}" for i in range(5))
    assert chat_loop(pipe, lines, out, err, {"max_new_tokens": 40}) == 5
    assert "dropped the 1 oldest exchange(s)" in err.getvalue()


def test_chat_as_a_process_reads_stdin_until_end_of_input(model_dir):
    """Real pipes: no prompt marker when stdin is not a terminal, and end of input ends the chat cleanly."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "polyformer.cli.main", "chat", "--model", str(model_dir),
                             "--max-new-tokens", "4"], input="hello there\n", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and result.stderr == ""


def test_help_for_both_verbs():
    for verb in ("generate", "chat"):
        result = run_cli(verb, "--help")
        assert result.returncode == 0 and "--model" in result.stdout and "--temperature" in result.stdout


def test_pf_pipeline_builds_a_text_generation_pipeline(model_dir, pipe):
    loaded = pf.pipeline("text-generation", str(model_dir), device="cpu", dtype="float32", max_new_tokens=7)
    assert isinstance(loaded, TextGenerationPipeline)
    assert loaded("the cat sat") == pipe("the cat sat", max_new_tokens=7)
    given = pf.pipeline("text-generation", pipe.model, tokenizer=pipe.tokenizer)
    assert given("the cat sat", max_new_tokens=7) == pipe("the cat sat", max_new_tokens=7)
