"""Hub ids (``google/electra-small-discriminator``, ``name@revision``) to a local folder.

Downloads go through ``huggingface_hub.snapshot_download`` into the standard Hugging Face cache,
so a checkpoint fetched once is shared with ``transformers`` and served offline afterwards, and a
file is only ever visible in a snapshot once it is complete (huggingface_hub writes
``*.incomplete`` blobs and renames them). Only the files spacy-electra reads are fetched:
config.json, the WordPiece vocabulary, and safetensors weights, or ``pytorch_model.bin`` when a
repo has no safetensors.

The environment is read at call time (``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_HOME``,
``HF_HUB_CACHE``), not when huggingface_hub was first imported, so a process (or a test) that
sets them later is obeyed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence, Tuple, Type

CONFIG_FILES = ("config.json", "vocab.txt", "tokenizer_config.json")
SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json", "model-*.safetensors")
BIN_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin")
WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

# huggingface_hub's own rule for repo ids (one optional namespace, 96 characters, no "--"/"..").
_REPO_ID = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,199}")
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubError(ValueError):
    """A hub id that cannot be turned into a complete local snapshot (message says why)."""


def parse_hub_id(name: str, revision: Optional[str] = None) -> Tuple[str, str]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; the revision defaults to ``main``.

    Refused: anything that could leave the cache folder when used as a path (``..``, absolute
    paths, backslashes) and characters the hub never allows in ids, so a hostile id fails here
    with the reason rather than somewhere inside a download."""
    repo_id, _, inline = name.partition("@")
    if inline and revision and inline != revision:
        raise HubError(f"{name!r} names revision {inline!r} but revision={revision!r} was also given; pass one.")
    revision = inline or revision or "main"
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith((".", "-")):
        raise HubError(
            f"{name!r} is neither an existing local folder nor a valid hub id (expected 'name' or "
            "'organisation/name', letters, digits, '-', '_', '.', no '..'); check the path."
        )
    if not _REVISION.fullmatch(revision) or ".." in revision.split("/") or "//" in revision:
        raise HubError(f"Revision {revision!r} of {repo_id} is not a valid branch, tag or commit name.")
    return repo_id, revision


def offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return value.upper() in _TRUE if value is not None else bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def _cache_dir() -> str:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_NAMES)


def download(name: str, *, revision: Optional[str] = None, local_files_only: bool = False) -> Path:
    """The cached snapshot folder of hub id ``name``, downloading what is missing unless
    ``local_files_only`` or ``HF_HUB_OFFLINE=1``. Raises ``HubError`` with the id and the cause."""
    repo_id, revision = parse_hub_id(name, revision)
    label = repo_id if revision == "main" else f"{repo_id}@{revision}"
    cache_only = local_files_only or offline()
    folder = _snapshot(repo_id, revision, label, CONFIG_FILES + SAFETENSORS_FILES, cache_only)
    if not has_weights(folder) and not cache_only:
        folder = _snapshot(repo_id, revision, label, CONFIG_FILES + BIN_FILES, cache_only)
    if not (folder / "config.json").is_file() or not has_weights(folder):
        missing = "config.json" if not (folder / "config.json").is_file() else "model.safetensors or pytorch_model.bin"
        if cache_only:
            raise HubError(
                f"The cached copy of {label} in {folder} lacks {missing} (an interrupted download?); "
                "load it once with downloads allowed (unset HF_HUB_OFFLINE) to complete it."
            )
        raise HubError(
            f"Hub repo {label} has no {missing}; spacy-electra reads HF-format checkpoints "
            "(TensorFlow or Flax repos must first be converted with `transformers`)."
        )
    return folder


def _network_errors() -> Tuple[Type[BaseException], ...]:
    """What a failed transfer raises: ``requests`` errors in huggingface_hub 0.x, ``httpx``
    errors in 1.x, ``OSError`` for a size mismatch or a full disk."""
    errors: Tuple[Type[BaseException], ...] = (OSError,)
    for module, name in (("requests", "RequestException"), ("httpx", "HTTPError")):
        try:
            errors += (getattr(__import__(module), name),)
        except (ImportError, AttributeError):
            pass
    return errors


def _snapshot(repo_id: str, revision: str, label: str, patterns: Sequence[str], cache_only: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from .. import __version__

    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=list(patterns),
                local_files_only=cache_only,
                cache_dir=_cache_dir(),
                endpoint=_endpoint(),
                library_name="spacy-electra",
                library_version=__version__,
            )
        )
    except GatedRepoError:
        raise HubError(
            f"Hub repo {label} is gated: accept its terms on the hub and log in (`huggingface-cli login`)."
        ) from None
    except RepositoryNotFoundError:
        raise HubError(
            f"Hub repo {label} was not found at {_endpoint()} (a typo, or a private repo: log in with "
            "`huggingface-cli login`); a local checkpoint must be an existing folder."
        ) from None
    except RevisionNotFoundError:
        raise HubError(f"Hub repo {repo_id} has no revision {revision!r} (branch, tag or commit).") from None
    except LocalEntryNotFoundError as err:
        if cache_only:
            raise HubError(
                f"Checkpoint {label!r} is neither a local folder nor in the local Hugging Face cache, and "
                "downloads are off (HF_HUB_OFFLINE=1 or local_files_only). Run once with downloads "
                f"allowed, or `huggingface-cli download {repo_id}` and copy the cache, or point "
                "`checkpoint` at a local folder with config.json, vocab.txt and model.safetensors."
            ) from None
        raise HubError(f"Could not download {label} from {_endpoint()}: {_cause(err)}.") from None
    except (HfHubHTTPError,) + _network_errors() as err:
        raise HubError(
            f"Could not download {label} from {_endpoint()}: {_cause(err)}. Nothing partial is used; "
            "retry when the connection works (finished files are kept in the cache)."
        ) from None


def _cause(err: BaseException) -> str:
    """The innermost exception's message, one line: the network error, not its wrappers."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"
