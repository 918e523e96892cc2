"""A Google TensorFlow ELECTRA checkpoint as Hugging Face folders (``spacy-electra convert-tf``).

Reads the checkpoint without TensorFlow (``tf_checkpoint``) through ``read_checkpoint`` and
writes each model with ``save_checkpoint`` (atomically). Every model asked for is read and
checked before the first folder is written, so a checkpoint without a generator leaves nothing
half-converted behind.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ..pieces import WordPieceEncoder
from .errors import CheckpointError
from .reader import Checkpoint, read_checkpoint
from .tf_checkpoint import locate
from .writer import save_checkpoint


def convert_tf(
    checkpoint: str, output: Path, model: str = "discriminator", *, heads: Optional[int] = None,
    generator_heads: Optional[int] = None, lowercase: Optional[bool] = None,
) -> List[Path]:
    """Convert ``model`` (``discriminator``, ``generator`` or ``both``) of the TF checkpoint to HF
    folders: ``output`` itself for one model, ``output/discriminator`` and ``output/generator``
    for both. ``heads``/``generator_heads`` override the attention-head rule (hidden // 64);
    ``lowercase`` overrides the vocabulary's casing (default: lowercased, as Google's English
    models). Returns the folders written."""
    if locate(checkpoint) is None:
        raise CheckpointError(
            f"{checkpoint} is not a TensorFlow checkpoint: pass the model.ckpt-N prefix, its .index file, "
            "or the folder holding it (with its `checkpoint` file)."
        )
    models = ["discriminator", "generator"] if model == "both" else [model]
    read: Dict[str, Checkpoint] = {
        name: read_checkpoint(
            checkpoint, tf_model=name, vocab="optional",
            num_attention_heads=generator_heads if name == "generator" else heads,
        )
        for name in models
    }
    written = []
    for name, source in read.items():
        vocab = source.vocab
        if vocab is not None and lowercase is not None:
            vocab = WordPieceEncoder(vocab.vocab, lowercase=lowercase)
        folder = output / name if model == "both" else output
        written.append(save_checkpoint(source.build(), folder, vocab=vocab))
    return written
