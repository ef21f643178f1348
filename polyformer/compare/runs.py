"""Sub-run directories: one per (model, task, seed), finished when its `result.json` exists.

    OUT/runs/<model>/<task>/seed-<s>/     the recipe's own run files (pretraining, fine-tuning, ...)
    OUT/runs/<model>/<task>/seed-<s>/result.json   written last, atomically: the sub-run is done

A comparison started again skips every finished sub-run. An unfinished one continues from its
latest checkpoint where its recipe can resume (pretraining and the contrastive stage, through the
trainer's exact resume); the others (fine-tuning, evaluations: they checkpoint only at the end)
start over in a clean directory, which with the same seed gives the same result.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyformer.io.safetensors_io import write_json

RESULT_FILE = "result.json"


def model_key(name: str) -> str:
    """A model name as a folder name: `SmolLM2-135M-Instruct`, `runs_gpt_model`, ..."""
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return key or "model"


def model_names(specs: list[str]) -> list[str]:
    """Short, distinct names for models given as catalog names or paths (a path's last part, unless two share it)."""
    short = [model_key(Path(spec).name) for spec in specs]
    return [name if short.count(name) == 1 else model_key(spec) for name, spec in zip(short, specs)]


@dataclass(frozen=True)
class SubRun:
    """One (model, task, seed) directory under OUT/runs."""

    root: Path
    model: str
    task: str
    seed: int

    @property
    def path(self) -> Path:
        return self.root / "runs" / model_key(self.model) / self.task / f"seed-{self.seed}"

    @property
    def done(self) -> bool:
        return (self.path / RESULT_FILE).is_file()

    def result(self) -> dict[str, Any]:
        return json.loads((self.path / RESULT_FILE).read_text())

    def fresh(self) -> Path:
        """The directory, emptied of an unfinished attempt."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        return self.path

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        record = {"model": self.model, "task": self.task, "seed": self.seed, **result}
        write_json(record, self.path / RESULT_FILE)  # atomic: a temp file renamed into place
        return record
