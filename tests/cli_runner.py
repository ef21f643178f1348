"""Run the `polyformer` CLI in-process (a subprocess per case would re-import torch each time)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI's entry point on args; stdout, stderr and the exit code as a subprocess would give."""
    from polyformer.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(arg) for arg in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def run_cli_process(*args: str) -> subprocess.CompletedProcess:
    """The CLI as a real subprocess, for checks that need a clean interpreter."""
    return subprocess.run([sys.executable, "-m", "polyformer.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, exactly one `error: ...` line on stderr containing every needle, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
