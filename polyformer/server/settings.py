"""What a server serves and its limits: the settings of `polyformer serve` and `create_app`.

    settings = ServerSettings(models=[parse_served("smol=SmolLM2-135M-Instruct")], max_concurrent=8)

A served model or index is `NAME=SOURCE` (a catalog name, a model folder, a .gguf file, a
fine-tuning run; an index directory), or a bare SOURCE named after itself (its file or folder
name without the suffix). Every limit is checked here, so a bad value fails before anything loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from polyformer.errors import ConfigError

API_KEY_ENV = "POLYFORMER_API_KEY"
DTYPES = ("float32", "bfloat16", "int8")


@dataclass(frozen=True)
class Served:
    """One model or index to serve: the name requests use and where it comes from."""

    name: str
    source: str


def parse_served(text: str, what: str = "--model") -> Served:
    """`NAME=SOURCE` or a bare SOURCE (named after its file or folder)."""
    name, equals, source = text.partition("=")
    if not equals:
        source = text
        name = Path(text.rstrip("/")).name
        name = name[: -len(".gguf")] if name.endswith(".gguf") else name
    if not name or not source:
        raise ConfigError(f"{what} {text!r}: expected NAME=PATH_OR_CATALOG_NAME (or just the path)")
    if any(c.isspace() or c in "/\\" for c in name):
        raise ConfigError(f"{what} {text!r}: the name {name!r} may not hold spaces or slashes; give NAME=SOURCE")
    return Served(name, source)


@dataclass
class ServerSettings:
    """Everything `create_app` needs; the CLI options of `polyformer serve` map onto these fields."""

    models: list[Served] = field(default_factory=list)
    indexes: list[Served] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # None: POLYFORMER_API_KEY if set, else no authentication
    dtype: str = "float32"
    device: str = "cpu"
    max_concurrent: int = 16  # requests in service at once (and generation rows decoded together)
    max_queue: int = 64  # requests waiting for service; beyond that 429
    max_batch_tokens: int = 8192  # padded tokens per embedding / classification batch
    max_body_bytes: int = 2 * 1024 * 1024
    drain_seconds: float = 60.0  # after SIGTERM, how long in-flight requests may take before exit
    retry_after_seconds: int = 1

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        for name in ("max_concurrent", "max_batch_tokens", "max_body_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise ConfigError(f"--max-queue must be an integer >= 0, got {self.max_queue!r}")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port!r}")
        names = [s.name for s in self.models] + [s.name for s in self.indexes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"the name {repeated[0]!r} is given to more than one --model / --index; name them NAME=SOURCE")
        if not self.models and not self.indexes:
            raise ConfigError("nothing to serve: give at least one --model NAME=PATH (or --index NAME=DIR)")
