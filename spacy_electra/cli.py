"""The ``spacy-electra`` command line (also ``python -m spacy_electra``)."""
from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="spacy-electra",
    help="ELECTRA for spaCy: inspect and convert checkpoints, pretrain, build data.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("info")
def info(checkpoint: str = typer.Argument(..., help="Local HF-format folder or cached hub id.")) -> None:
    """Load a checkpoint and print its kind, shape and parameter count."""
    from .model import load_checkpoint

    model = load_checkpoint(checkpoint)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    typer.echo(
        f"{model.kind}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
        f"embedding {cfg.embedding_size}, heads {cfg.num_attention_heads}, "
        f"vocab {cfg.vocab_size}, {n_params / 1e6:.2f}M parameters"
    )


@app.command("export")
def export(
    checkpoint: str = typer.Argument(..., help="Local HF-format folder or cached hub id."),
    output: Path = typer.Argument(..., help="Folder to write (config.json, model.safetensors, vocab)."),
) -> None:
    """Re-write a checkpoint (e.g. a pytorch_model.bin one) as safetensors in HF layout."""
    from .model import load_checkpoint, save_checkpoint
    from .model.checkpoint import resolve_checkpoint
    from .pieces import WordPieceEncoder

    source = resolve_checkpoint(checkpoint)
    vocab = WordPieceEncoder.from_directory(source) if (source / "vocab.txt").exists() else None
    save_checkpoint(load_checkpoint(source), output, vocab=vocab)
    typer.echo(f"Wrote {output}")


@app.command("demo")
def demo(output: Path = typer.Option(Path("training/demo"), help="Where to write the demo checkpoint.")) -> None:
    """End-to-end smoke run: build a random ELECTRA-small-shaped discriminator, export it in HF
    format, load it back and check the outputs are identical."""
    import torch

    from .model import ElectraConfig, ElectraDiscriminator, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = ElectraDiscriminator(ElectraConfig()).eval()
    save_checkpoint(model, output)
    again = load_checkpoint(output)
    ids = torch.randint(5, model.config.vocab_size, (2, 64))
    with torch.no_grad():
        same = torch.equal(model(ids), again(ids))
    typer.echo(f"Wrote {output}; reloaded outputs identical: {same}")
    if not same:
        raise typer.Exit(1)


from .convert import convert_command  # noqa: E402

app.command("convert")(convert_command)


def main() -> None:
    app()
