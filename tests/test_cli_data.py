"""`polyformer data` through the real entry point, as a user's shell runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polyformer.data import catalog

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polyformer.cli.main", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_help_lists_data_verb() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "data" in proc.stdout


def test_data_list() -> None:
    proc = run_cli("data", "list")
    assert proc.returncode == 0, proc.stderr
    for entry in catalog.entries():
        assert entry.name in proc.stdout
        assert entry.requirement in proc.stdout


def test_data_list_json() -> None:
    proc = run_cli("data", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["name"] for r in records] == [e.name for e in catalog.entries()]
    assert all(isinstance(r["cached"], bool) for r in records)


def test_data_get_unknown_name_is_one_line() -> None:
    proc = run_cli("data", "get", "nosuch")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "nosuch" in lines[0]
    assert "wnut16" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_data_get_prints_path(catalog_path) -> None:
    expected = catalog_path("wnut16")  # warm the cache so the CLI does not download
    proc = run_cli("data", "get", "wnut16")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == expected


def test_main_turns_os_errors_into_one_line(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from polyformer.cli import main as cli_main

    def boom(name: str) -> Path:
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/model")

    monkeypatch.setattr(catalog, "fetch", boom)
    with pytest.raises(SystemExit) as info:
        cli_main.main(["data", "get", "wnut16"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: /nowhere/model: No such file or directory\n"


def test_every_verb_module_registers_its_commands() -> None:
    """The verbs are imported by name, never skipped: a deleted or broken verb module fails at import."""
    import typer
    from typer.main import get_command

    from polyformer.cli.main import VERBS, app

    names = set(get_command(app).commands)
    assert {"data", "info", "convert", "pretrain", "finetune", "evaluate", "predict", "generate", "chat", "embed",
            "index", "search", "cluster", "serve"} <= names
    for verb in VERBS:
        assert callable(verb.register)
    fresh = typer.Typer()
    VERBS[0].register(fresh)
    assert "data" in get_command(fresh).commands
