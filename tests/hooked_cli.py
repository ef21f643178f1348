"""Run `polyformer` commands in one process, with test hooks that let a test kill a run at a chosen moment.

    python tests/hooked_cli.py [--delay 0.05] [--stall-save-at 9 --flag FILE] -- pretrain ARGS... [-- VERB ARGS...]

--delay S           sleep S seconds before every optimizer step (so a test can SIGKILL mid-run)
--stall-save-at N   hang while writing the step-N checkpoint, after its first file, having
                    written FILE (so a test can SIGKILL the run in the middle of the write)

Commands separated by `--` run one after the other (one interpreter start for several runs);
the first that fails ends the process with its exit code. The hooks change timing only: each
command's results are those of `polyformer VERB ARGS...`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from polyformer.cli.main import main as polyformer_main
from polyformer.training import checkpoint as checkpoint_module
from polyformer.training.trainer import Trainer


def _slow_steps(seconds: float) -> None:
    original = Trainer.micro_batches

    def slow(self, step):
        time.sleep(seconds)
        return original(self, step)

    Trainer.micro_batches = slow


def _stall_save_at(step: int, flag: Path) -> None:
    """Make the checkpoint of `step` hang after its first file, leaving a half-written temp folder."""
    original = checkpoint_module.write_tensors
    prefix = f".tmp-{checkpoint_module.step_name(step)}"

    def stalling(tensors, path, metadata=None):
        original(tensors, path, metadata)
        if Path(path).parent.name.startswith(prefix):
            flag.write_text(str(path))
            time.sleep(600)

    checkpoint_module.write_tensors = stalling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stall-save-at", type=int, default=None)
    parser.add_argument("--flag", type=Path, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.delay:
        _slow_steps(args.delay)
    if args.stall_save_at is not None:
        _stall_save_at(args.stall_save_at, args.flag)
    for command in _commands(args.command):
        try:
            polyformer_main(command)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise


def _commands(words: list[str]) -> list[list[str]]:
    """`-- a b -- c d` → [[a, b], [c, d]]."""
    commands: list[list[str]] = [[]]
    for word in words:
        if word == "--":
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


if __name__ == "__main__":
    main()
