"""The ``spacy-electra`` command line (also ``python -m spacy_electra``).

Known errors (a bad checkpoint, config, input file or a full disk) end in one ``Error:`` line on
stderr and exit status 1; ``spacy-electra --verbose COMMAND ...`` shows their traceback too.
"""
from __future__ import annotations

from pathlib import Path

import typer

from .cli_errors import OneLineErrors, verbose_option

app = typer.Typer(
    name="spacy-electra",
    help="ELECTRA for spaCy: inspect and convert checkpoints, pretrain, distill, build data.",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrors,
)
app.callback()(verbose_option)


@app.command("info")
def info(checkpoint: str = typer.Argument(..., help="Local HF-format folder or hub id.")) -> None:
    """Load a checkpoint and print its kind, shape and parameter count."""
    from .checkpoint import read_checkpoint

    model = read_checkpoint(checkpoint, vocab="optional").build(None)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    typer.echo(
        f"{model.kind}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
        f"embedding {cfg.embedding_size}, heads {cfg.num_attention_heads}, "
        f"vocab {cfg.vocab_size}, {n_params / 1e6:.2f}M parameters"
    )


@app.command("check-gpu")
def check_gpu(
    gpu_id: int = typer.Option(0, "--gpu-id", help="The GPU `spacy train --gpu-id`, `annotate --gpu-id` or `pretrain` will use."),
    torch_only: bool = typer.Option(False, "--torch-only", help="Check torch alone (enough for `pretrain`)."),
) -> None:
    """Is this machine ready for GPU work? One line: what is ready, or what to install."""
    from .gpu import GPUNotReady, describe, require_gpu

    if gpu_id < 0:
        typer.echo("--gpu-id -1 is the CPU: nothing to check.")
        return
    try:
        require_gpu(gpu_id, need_cupy=not torch_only)
    except GPUNotReady as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(describe(gpu_id))


@app.command("export")
def export(
    checkpoint: str = typer.Argument(..., help="Local HF-format folder, hub id, or a trained spaCy pipeline folder."),
    output: Path = typer.Argument(..., help="Folder to write (config.json, model.safetensors, vocab)."),
    component: str = typer.Option(None, "--component", "-c", help="Pipeline component to export (needed when the pipeline has several)."),
) -> None:
    """Re-write a checkpoint (e.g. a pytorch_model.bin one) as safetensors in HF layout, or export a
    trained pipeline's component as an HF task model: electra_span_qa -> ElectraForQuestionAnswering,
    electra_ner / electra_tagger -> ElectraForTokenClassification, electra_textcat(_multilabel) ->
    ElectraForSequenceClassification."""
    from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint

    if not checkpoint.strip():
        raise CheckpointError(
            "No checkpoint given (empty string). In the spacy project workflow `finetune`, set one: "
            "--vars.checkpoint /path/to/folder or a Hugging Face Hub id."
        )
    if (Path(checkpoint) / "config.cfg").exists() and (Path(checkpoint) / "meta.json").exists():
        import spacy

        nlp = spacy.load(checkpoint)
        name, architecture = _export_component(nlp, component, output)
        typer.echo(f"Wrote {output} ({architecture}, from {name!r})")
        return
    if component is not None:
        raise typer.BadParameter(f"{checkpoint} is not a spaCy pipeline folder (config.cfg + meta.json); --component only applies to pipelines.")
    source = read_checkpoint(checkpoint, vocab="optional")
    save_checkpoint(source.build(None), output, vocab=source.vocab)
    typer.echo(f"Wrote {output}")


def _export_component(nlp, name: str, output: Path):
    """Export ``name`` (or the pipeline's only exportable component); returns it and the HF class."""
    from .pipes.export import ExportsToHF

    exportable = [n for n, pipe in nlp.pipeline if isinstance(pipe, ExportsToHF)]
    if name is None:
        if len(exportable) != 1:
            found = ", ".join(exportable) or "none"
            raise typer.BadParameter(f"Choose the component to export with --component (exportable: {found}).")
        name = exportable[0]
    if name not in exportable:
        raise typer.BadParameter(
            f"{name!r} is not an exportable component of this pipeline (exportable: {', '.join(exportable) or 'none'})."
        )
    try:
        architecture = nlp.get_pipe(name).export_hf(output, nlp=nlp)
    except ValueError as err:  # an architecture HF has no class for: the message says which part
        raise typer.BadParameter(str(err)) from None
    return name, architecture


from .convert import convert_command  # noqa: E402
from .convert_tf import convert_tf_command  # noqa: E402
from .distill.commands import distill_command  # noqa: E402
from .pretrain.commands import OVERRIDE_SETTINGS, pretrain_command, vocab_command  # noqa: E402

app.command("convert")(convert_command)
app.command("convert-tf")(convert_tf_command)
app.command("pretrain", context_settings=OVERRIDE_SETTINGS)(pretrain_command)
app.command("distill", context_settings=OVERRIDE_SETTINGS)(distill_command)
app.command("vocab")(vocab_command)

from .annotate.command import annotate_command  # noqa: E402
from .workflow.commands import app as _workflow_app  # noqa: E402

app.command("annotate")(annotate_command)

for _command in _workflow_app.registered_commands:
    app.registered_commands.append(_command)


def main() -> None:
    app()
