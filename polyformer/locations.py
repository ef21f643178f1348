"""Where a model spec lives on disk: a local path, a catalog name or a Hugging Face hub id.

Every entry point that takes a model or a tokenizer (`pf.load`, `pf.load_tokenizer`,
`SentenceEncoder.load`, the text-generation pipeline, every `--model`) turns its argument into a
local path here, trying in order:

1. an existing path; a run directory (no `config.json` of its own, a `model/` folder that has
   one: what `pretrain` and `finetune` write) stands for its `model/` folder;
2. a catalog name (`polyformer data list`), fetched into polyformer's cache;
3. a hub id `org/name`: the repository's snapshot in the local hub cache (`$HF_HUB_CACHE`, by
   default `~/.cache/huggingface/hub`, shared with transformers), downloaded only when it is not
   cached and the hub is reachable. `org/name/FILE.gguf` names one GGUF file of a repository.
   Only files polyformer reads are fetched (configs, safetensors weights, tokenizer files,
   sentence-transformers modules), never pickles or other frameworks' weights.

Offline (`HF_HUB_OFFLINE=1`, or no network) with nothing cached is an `OfflineError` saying so.
The module sits below io and tokenizers (it imports only `polyformer.errors`; the catalog and
`huggingface_hub` are imported when a name needs them), so both layers share it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from polyformer.errors import CheckpointError, OfflineError, PolyformerError

RUN_MODEL_DIR = "model"
_MARKERS = ("config.json", "modules.json")  # what makes a folder a model folder of its own
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:/(?P<file>[^/]+\.gguf))?$")
HUB_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja")  # fnmatch: `*` also matches `/`
_TRUE = {"1", "ON", "YES", "TRUE"}


def resolve(spec: str | os.PathLike[str], error: type[PolyformerError] = CheckpointError) -> Path:
    """The local path a model spec names (see the module docstring); `error` is raised when it names nothing."""
    path = Path(spec)
    if path.exists():
        return run_model_folder(path)
    from polyformer.data import catalog  # imported lazily: the catalog may download

    if catalog.is_catalog_name(str(spec)):
        return catalog.fetch(str(spec))
    if not isinstance(spec, str):  # a Path is a path, never a hub id
        raise error(f"{spec}: no such file or directory")
    match = _HUB_ID.match(spec)
    if match is None or ".." in spec or "--" in spec:
        raise error(f"{spec}: no such file or directory, and not a catalog name (see `polyformer data list`) "
                    "or a Hugging Face hub id (org/name)")
    return hub_path(match["repo"], match["file"], error)


def run_model_folder(path: Path) -> Path:
    """A run directory's `model/` folder; any other path as it is."""
    if path.is_dir() and not any((path / marker).is_file() for marker in _MARKERS) \
            and (path / RUN_MODEL_DIR / "config.json").is_file():
        return path / RUN_MODEL_DIR
    return path


def is_hub_id(spec: str) -> bool:
    """True when `spec` is spelled like a hub id (`org/name` or `org/name/FILE.gguf`)."""
    return _HUB_ID.match(spec) is not None and ".." not in spec and "--" not in spec


def hub_offline() -> bool:
    """Whether hub downloads are switched off ($HF_HUB_OFFLINE, read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def hub_cache() -> str | None:
    """The hub cache folder when $HF_HUB_CACHE sets one (read at call time); None: the library's default."""
    return os.environ.get("HF_HUB_CACHE") or None


def hub_path(repo: str, file: str | None = None, error: type[PolyformerError] = CheckpointError) -> Path:
    """A hub repository's snapshot folder (or one of its files), from the cache first, else downloaded."""
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise error(f"{repo}: reading hub ids needs huggingface_hub (pip install huggingface_hub)") from None
    spec = f"{repo}/{file}" if file else repo

    def fetch(local_only: bool) -> Path:
        if file:
            return Path(huggingface_hub.hf_hub_download(repo, file, cache_dir=hub_cache(), local_files_only=local_only))
        return Path(huggingface_hub.snapshot_download(repo, cache_dir=hub_cache(), allow_patterns=list(HUB_FILES),
                                                      local_files_only=local_only))

    try:
        try:
            return fetch(local_only=True)
        except hub_errors.LocalEntryNotFoundError:
            if hub_offline():
                raise
        return fetch(local_only=False)
    except hub_errors.LocalEntryNotFoundError:
        where = hub_cache() or huggingface_hub.constants.HF_HUB_CACHE
        reason = ("HF_HUB_OFFLINE is set: unset it to download" if hub_offline()
                  else "the Hugging Face hub cannot be reached: connect, or copy the model into the cache")
        raise OfflineError(f"{spec}: not a local path or catalog name, and not in the hub cache ({where}); "
                           f"{reason}") from None
    except hub_errors.GatedRepoError:
        raise error(f"{spec}: the hub repository is gated; accept its terms on the hub and log in (hf auth login)") from None
    except hub_errors.RepositoryNotFoundError:
        raise error(f"{spec}: no such file or directory, and no Hugging Face hub repository of that name "
                    "(a private one needs a token: hf auth login)") from None
    except hub_errors.EntryNotFoundError:
        raise error(f"{spec}: the hub repository {repo} has no file {file}") from None
    except hub_errors.HfHubHTTPError as exc:
        raise error(f"{spec}: the hub refused the download ({' '.join(str(exc).split())[:200]})") from None
