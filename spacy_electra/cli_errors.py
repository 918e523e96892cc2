"""One-line errors for the command line: a known failure prints ``Error: <cause and fix>`` on
stderr and exits with status 1; ``--verbose`` (before the command) shows the traceback as well.

Known failures are the project's own error types, whose messages already say what to change,
and ``OSError`` (a full disk, a missing or unreadable file), whose message names the file. Any
other exception is a bug and keeps its traceback. The error types are looked up in
``sys.modules`` rather than imported: an instance of a class means its module is loaded, and the
command line stays free of torch and spaCy imports until a command needs them.
"""
from __future__ import annotations

import sys
import traceback
from typing import Any, Tuple, Type

import typer
from typer.core import TyperGroup

# (module, class name) of every error whose message is written for the user.
KNOWN_ERRORS: Tuple[Tuple[str, str], ...] = (
    ("spacy_electra.checkpoint.errors", "CheckpointError"),
    ("spacy_electra.pieces", "VocabError"),
    ("spacy_electra.convert", "ConversionError"),
    ("spacy_electra.pretrain.config", "ConfigError"),
    ("spacy_electra.pretrain.corpus", "CorpusError"),
    ("spacy_electra.pretrain.trainer", "PretrainError"),
    ("spacy_electra.distill.config", "DistillError"),
    ("spacy_electra.gpu", "GPUNotReady"),
)


def known_error_types() -> Tuple[Type[BaseException], ...]:
    types: list = [OSError]
    for module, name in KNOWN_ERRORS:
        if module in sys.modules:
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def one_line(err: BaseException) -> str:
    """The error as one line (an OSError's own text names the file: ``[Errno 28] No space...``)."""
    return " ".join(f"Error: {err}".split())


class OneLineErrors(TyperGroup):
    """A Typer group whose subcommands report known errors in one line (see the module doc)."""

    # ``ctx`` is the base class's Context: click's, or (newer typer) that of typer's own copy of click.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except known_error_types() as err:
            if ctx.params.get("verbose"):
                traceback.print_exc()
            typer.echo(one_line(err), err=True)
            raise typer.Exit(1) from None


def verbose_option(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the traceback of an error, not only its line."),
) -> None:
    """The app callback: ``--verbose`` is read from ``ctx.params`` by :class:`OneLineErrors`."""
