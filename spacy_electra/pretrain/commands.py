"""``spacy-electra pretrain`` and ``spacy-electra vocab`` as typer commands.

The functions are plain typer callbacks so the main CLI can register them with
``app.command("pretrain", context_settings=OVERRIDE_SETTINGS)(pretrain_command)``;
``python -m spacy_electra.pretrain`` (``__main__.py``) is a stand-alone app that torchrun can launch.
Errors are left to the app's :class:`~spacy_electra.cli_errors.OneLineErrors`: one line, exit 1.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

# Unknown options (--training.max_steps 100) are passed through as config overrides.
OVERRIDE_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def pretrain_command(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="Pretraining config (.cfg), e.g. configs/pretrain_small.cfg.",
                                       exists=True, dir_okay=False),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder: logs, checkpoints, exported models."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT/checkpoints/last.pt."),
    resume_if_found: bool = typer.Option(
        False, "--resume-if-found",
        help="Continue from OUTPUT/checkpoints/last.pt when it exists, else start (for workflows that rerun).",
    ),
) -> None:
    """Pretrain ELECTRA (replaced-token detection) or the same-size MLM control.

    Settings are overridden with dotted options, e.g. --training.max_steps 100 --model.size tiny.
    Launch with torchrun (python -m torch.distributed.run -m spacy_electra.pretrain pretrain ...)
    for several processes; training.batch_size is the global batch.
    """
    from .config import load_config, parse_overrides
    from .trainer import CHECKPOINT, pretrain

    config = load_config(config_path, parse_overrides(ctx.args))
    resume = resume or (resume_if_found and (output / CHECKPOINT).exists())
    last = pretrain(config, output, resume=resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, one process reports
        return
    exported = [p for p in ("discriminator", "generator", "mlm") if (output / p / "config.json").exists()]
    logs = f"log {output / 'train_log.jsonl'}, training state {output / CHECKPOINT}"
    if exported and last.get("step", config.training.max_steps) == config.training.max_steps:
        typer.echo(f"Wrote {', '.join(str(output / p) for p in exported)} (HF format: use as `checkpoint`); {logs}.")
    else:
        typer.echo(f"Stopped before max_steps; wrote {logs}: continue with --resume.")


def vocab_command(
    inputs: List[Path] = typer.Argument(..., help="Text files or folders (lines, blank-line or <doc> format)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for vocab.txt and tokenizer_config.json."),
    vocab_size: int = typer.Option(30522, "--vocab-size", help="Number of pieces, specials included."),
    cased: bool = typer.Option(False, "--cased/--uncased", help="Keep case (and accents)."),
    min_frequency: int = typer.Option(2, "--min-frequency", help="Drop merges seen fewer times."),
    max_documents: Optional[int] = typer.Option(None, "--max-documents", help="Read at most this many documents."),
) -> None:
    """Train a WordPiece vocabulary with `tokenizers`, normalised as the encoder will read it."""
    from .vocab import train_vocab

    encoder = train_vocab(
        [str(p) for p in inputs], output, vocab_size=vocab_size, lowercase=not cased,
        strip_accents=False if cased else None, min_frequency=min_frequency, max_documents=max_documents,
    )
    typer.echo(f"Wrote {encoder.vocab_size} pieces ({'cased' if cased else 'uncased'}) to {output}")

