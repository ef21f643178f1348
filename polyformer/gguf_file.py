"""GGUF files read with the `gguf` package, bounds-checked: a damaged file is one typed error.

`gguf.GGUFReader` parses the header of a memory-mapped file and trusts every length in it. On a
damaged file it raises whatever numpy or Python raise (IndexError, ValueError, KeyError, ...),
decodes metadata strings only when they are asked for (a bare UnicodeDecodeError, much later),
and when a count is damaged into a huge number it keeps reading empty slices past the end of
the file for as long as the count says — in effect a hang that grows memory.

`GGUFFile` closes those holes at the reader: every read is checked against the size of the file,
every array length against the bytes left, and metadata values are decoded and type-checked on
request. Every failure is raised as the caller's error type (`CheckpointError` for a model,
`TokenizerError` for a vocabulary) with a message that names the file. Parsed files are cached
per (path, mtime, size): the model and the tokenizer of one file share a parse, which for a
large vocabulary takes seconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyformer.errors import CheckpointError, PolyformerError

_HINT = "re-download or re-convert it"


class _Damaged(ValueError):
    """A length or offset in the file points past its end."""


@functools.cache
def _bounded_reader_class():
    from gguf import GGUFReader, GGUFValueType

    class BoundedReader(GGUFReader):
        """GGUFReader whose reads never pass the end of the file."""

        def _get(self, offset, dtype, count=1, override_order=None):
            count, offset = int(count), int(offset)
            end = offset + np.dtype(dtype).itemsize * count
            if offset < 0 or count < 0 or end > len(self.data):
                raise _Damaged(f"a read of {count} x {np.dtype(dtype).name} at byte {offset} passes the end "
                               f"of the file ({len(self.data)} bytes)")
            return super()._get(offset, dtype, count, override_order)

        def _get_field_parts(self, orig_offs, raw_type):
            if raw_type == GGUFValueType.ARRAY:  # its items must fit in what is left of the file
                item_type = int(self._get(orig_offs, np.uint32)[0])
                length = int(self._get(orig_offs + 4, np.uint64)[0])
                left = len(self.data) - (orig_offs + 12)
                if length * _smallest_item(self, item_type) > left:
                    raise _Damaged(f"an array of {length} items at byte {orig_offs} cannot fit in the {left} bytes left")
            return super()._get_field_parts(orig_offs, raw_type)

    return BoundedReader


def _smallest_item(reader, item_type: int) -> int:
    from gguf import GGUFValueType

    if item_type == GGUFValueType.STRING:
        return 8  # its length
    if item_type == GGUFValueType.ARRAY:
        return 12  # item type and length
    scalar = reader.gguf_scalar_to_np.get(item_type)
    return np.dtype(scalar).itemsize if scalar is not None else 1


@dataclass(frozen=True)
class GGUFFile:
    """A parsed GGUF file: its tensors (memory-mapped) and type-checked metadata."""

    path: Path
    reader: Any  # the bounded gguf.GGUFReader
    error: type[PolyformerError]

    @property
    def tensors(self) -> list:
        return self.reader.tensors

    def keys(self) -> list[str]:
        """Metadata keys (without the reader's own GGUF.* entries)."""
        return [name for name in self.reader.fields if not name.startswith("GGUF.")]

    def value(self, key: str, kind: type | tuple[type, ...] | None = None) -> Any:
        """The value of metadata `key` (None when absent): str, number, bool or list.

        With `kind`, a scalar must be an instance of it, a list must hold only instances of it.
        """
        from gguf import GGUFValueType

        field = self.reader.fields.get(key)
        if field is None:
            return None
        try:
            value = field.contents()
        except (ValueError, IndexError, TypeError) as err:  # UnicodeDecodeError is a ValueError
            raise self.error(f"{self.path}: GGUF metadata {key!r} is damaged ({err}); {_HINT}") from None
        is_array = bool(field.types) and field.types[0] == GGUFValueType.ARRAY
        value = list(value) if is_array else value
        if kind is not None and not all(_is(item, kind) for item in (value if is_array else [value])):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.error(f"{self.path}: GGUF metadata {key!r} holds {_describe(value)}, expected "
                             f"{'a list of ' if is_array else ''}{names}; the file is damaged; {_HINT}")
        return value


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # a flag where a number belongs
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _describe(value: Any) -> str:
    if isinstance(value, list):
        odd = next((item for item in value if not isinstance(item, type(value[0]))), value[0]) if value else None
        return f"a list of {type(odd).__name__}" if value else "an empty list"
    return f"a {type(value).__name__}"


def open_gguf_file(path: str | Path, error: type[PolyformerError] = CheckpointError) -> GGUFFile:
    """The parsed GGUF file at `path`; `error` (naming the file) when it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: GGUF file not found")
    stat = path.stat()
    try:
        reader = _parse(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, MemoryError, OSError) as err:
        raise error(f"{path}: not a readable GGUF file, truncated or damaged ({type(err).__name__}: {err}); {_HINT}") from None
    return GGUFFile(path, reader, error)


@functools.lru_cache(maxsize=2)
def _parse(path: str, mtime_ns: int, size: int):
    return _bounded_reader_class()(path)


__all__ = ["GGUFFile", "open_gguf_file"]
