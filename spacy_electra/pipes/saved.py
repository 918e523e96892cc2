"""Saving and loading the package's components: what spaCy's ``TrainablePipe`` does, plus two
checks a saved pipeline needs because its files are untrusted input.

* The component's ``cfg`` (its labels, thresholds) is a separate JSON file beside the model: a
  digest of it travels inside the model file (``model.attrs``), so an edited or mismatched
  ``cfg`` is an error at load instead of wrong labels (or an IndexError) at the first doc.
* A truncated or random-bytes model file makes Thinc raise "Unpack failed" with no file name:
  the error names the component's folder and the fix.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import srsly
from spacy.pipeline import TrainablePipe

from ..checkpoint.errors import CheckpointError

CFG_DIGEST = "electra_cfg_sha256"


def _digest(cfg: Any) -> str:
    """Over the cfg as spaCy writes it to disk (srsly's indented JSON rounds floats to 10 decimals), so a
    learned float threshold digests the same before saving and after loading."""
    return hashlib.sha256(srsly.json_dumps(_key_sorted(cfg), indent=2).encode("utf8")).hexdigest()


def _key_sorted(value: Any) -> Any:
    """Dicts rebuilt in key order: srsly's ``sort_keys`` falls back to the standard json module,
    which does not round floats as the written file does."""
    if isinstance(value, dict):
        return {key: _key_sorted(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_key_sorted(item) for item in value]
    return value


class CheckedPipe(TrainablePipe):
    """A ``TrainablePipe`` whose saved form carries a digest of its ``cfg`` and whose load
    errors name the file. Subclasses add ``check_loaded`` for checks of their own."""

    def check_loaded(self, source: str) -> None:
        """Called once a saved component is loaded; raise ``ValueError`` naming ``source``."""

    def _stamp(self) -> None:
        self.model.attrs[CFG_DIGEST] = _digest(self.cfg)

    def _verify(self, source: str) -> None:
        expected = self.model.attrs.get(CFG_DIGEST)
        if expected is not None and expected != _digest(self.cfg):
            raise ValueError(
                f"{source}: the component's cfg does not match the one it was saved with (edited, or "
                "copied from another pipeline); restore the pipeline from a good copy."
            )
        self.check_loaded(source)

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        self._stamp()
        return super().to_bytes(exclude=exclude)

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        self._stamp()
        super().to_disk(path, exclude=exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "CheckedPipe":
        _named(lambda: super(CheckedPipe, self).from_bytes(bytes_data, exclude=exclude), f"component {self.name!r}")
        self._verify(f"component {self.name!r}")
        return self

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "CheckedPipe":
        _named(lambda: super(CheckedPipe, self).from_disk(path, exclude=exclude), str(path))
        self._verify(str(path))
        return self


def _named(load: Callable[[], Any], source: str) -> Any:
    try:
        return load()
    except CheckpointError as err:  # the blob's own checks: already say what and how to fix
        raise CheckpointError(f"{source}: {err}") from None
    except ValueError as err:  # Thinc/srsly "Unpack failed", a malformed cfg
        if source in str(err):
            raise
        raise ValueError(
            f"{source} is not a readable saved component ({' '.join(str(err).split())[:300]}); the files were "
            "cut short or changed after saving: restore the pipeline from a good copy."
        ) from err
