"""Checkpoints into Thinc nodes, at ``initialize`` and nowhere else.

A config names its checkpoint; building the config (``nlp.add_pipe``, ``spacy.load``,
``spacy train``'s resolution) reads nothing, and a saved pipeline carries its weights in its
own blob. ``initialize`` reads the checkpoint once through ``checkpoint.read_checkpoint``. A
component that needs more of the same checkpoint (a head taking a fine-tuned classifier) reads
it itself and lends it to the encoder's initialisation with ``lend``, so the files are read
once, not twice.
"""
from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

from thinc.api import Model

from ..checkpoint import Checkpoint, CheckpointError, read_checkpoint
from ..checkpoint.reader import left_behind_warning
from ..torch_model.windowed import WindowedEncoder

_LENT: contextvars.ContextVar[Dict[str, Checkpoint]] = contextvars.ContextVar("electra_lent_checkpoints", default={})


@contextlib.contextmanager
def lend(checkpoint: Checkpoint) -> Iterator[None]:
    """While active, an encoder whose ``checkpoint`` setting is ``checkpoint.source`` takes
    this already-read checkpoint instead of reading the files again."""
    token = _LENT.set({**_LENT.get(), checkpoint.source: checkpoint})
    try:
        yield
    finally:
        _LENT.reset(token)


def read_for(
    model: Model, section: str, *, taken: tuple = (), check: Optional[Callable[[Checkpoint], None]] = None
) -> Checkpoint:
    """The checkpoint named by ``model.attrs["checkpoint"]`` (lent, or read now). Errors name
    the config ``section`` that holds the setting and how to fix it. ``check`` (raising
    ``CheckpointError``) refuses a checkpoint the caller cannot use before any warning about
    the heads it leaves behind, so a wrong checkpoint is one error and nothing else."""
    source = model.attrs["checkpoint"]
    lent = _LENT.get().get(source)
    if lent is not None:
        if check is not None:
            check(lent)
        return lent
    try:
        checkpoint = read_checkpoint(source)
    except CheckpointError as err:
        path = Path(source).expanduser()
        if source.startswith((".", "/", "~")) and not path.exists():
            raise CheckpointError(
                f"Checkpoint folder {str(path)!r} does not exist: set `checkpoint` in {section} to a local folder "
                "with config.json, vocab.txt and model.safetensors (e.g. one written by `spacy-electra pretrain`)."
            ) from None
        raise CheckpointError(
            f"{str(err).rstrip('.')}. To use another model, set `checkpoint` in {section} "
            "(e.g. --paths.checkpoint /path/to/folder with the shipped configs)."
        ) from None
    if check is not None:
        check(checkpoint)
    left_behind_warning(checkpoint, taken)
    return checkpoint


def load_checkpoint_into(node: Model, section: Optional[str] = None) -> WindowedEncoder:
    """Initialise a ``TorchEncoder.v1`` node from its checkpoint (its encoder and vocabulary)."""
    from .torch_encoder import set_encoder  # the node module imports this one

    checkpoint = read_for(node, section or "the encoder's model config (TorchEncoder.v1)")
    module = WindowedEncoder(checkpoint.build("encoder"), checkpoint.require_vocab())
    set_encoder(node, module)
    return module
