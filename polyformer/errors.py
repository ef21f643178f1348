"""Typed errors for every user-facing mistake.

Each error names the file, field or value at fault and says how to fix it; the CLI turns any
`PolyformerError` into one line on stderr and a non-zero exit instead of a traceback.
"""

from __future__ import annotations


class PolyformerError(Exception):
    """Base class: a user mistake or a bad input, reported as one clear line."""


class ConfigError(PolyformerError, ValueError):
    """A model or run configuration is missing a field or has an invalid value."""


class CheckpointError(PolyformerError):
    """A checkpoint file is missing, truncated, corrupted or does not match its config."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle-based checkpoint was refused because loading pickles can run arbitrary code."""


class UnknownModelError(PolyformerError):
    """A path or name does not identify a model type polyformer can read."""


class TokenizerError(PolyformerError):
    """A tokenizer file is missing or malformed, or the inputs cannot be tokenised."""


class CatalogError(PolyformerError):
    """An unknown catalog name, a failed download or a checksum mismatch."""


class OfflineError(CatalogError):
    """A catalog item or hub model is not cached and cannot be downloaded (offline, or no network)."""


class DataError(PolyformerError, ValueError):
    """Input data is empty, malformed or has unexpected fields."""
