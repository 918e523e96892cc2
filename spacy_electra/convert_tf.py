"""``spacy-electra convert-tf``: the command line of ``checkpoint.convert_tf``, which it imports
when it runs (the command line loads no torch until a command needs it)."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer


class TFModelChoice(str, Enum):
    discriminator = "discriminator"
    generator = "generator"
    both = "both"


def convert_tf_command(
    checkpoint: str = typer.Argument(..., help="TF checkpoint: the model.ckpt-N prefix, its .index, or its folder."),
    output: Path = typer.Argument(..., help="Folder to write (OUTPUT/discriminator and OUTPUT/generator with --model both)."),
    model: TFModelChoice = typer.Option(TFModelChoice.discriminator, "--model", "-m", help="Which model to convert."),
    heads: Optional[int] = typer.Option(None, "--heads", help="Discriminator attention heads (default: hidden size // 64)."),
    generator_heads: Optional[int] = typer.Option(None, "--generator-heads", help="Generator attention heads (default: hidden size // 64)."),
    cased: bool = typer.Option(False, "--cased", help="The vocabulary is cased (default: lowercased, as Google's English models)."),
) -> None:
    """Convert a Google ELECTRA TensorFlow checkpoint (google-research/electra) to Hugging Face
    folders, without TensorFlow. Optimizer slots and global_step are skipped; every tensor's
    checksum is verified."""
    from .checkpoint.convert_tf import convert_tf

    for folder in convert_tf(checkpoint, output, model.value, heads=heads, generator_heads=generator_heads,
                             lowercase=False if cased else None):
        typer.echo(f"Wrote {folder}")
