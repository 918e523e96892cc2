"""The ``annotate`` command; ``cli.py`` wires it with ``app.command("annotate")(annotate_command)``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def annotate_command(
    pipeline: str = typer.Argument(..., help="Pipeline folder or installed package name."),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="JSONL or text file (one document per line), or a folder of .jsonl/.ndjson/.txt files."),
    output: Path = typer.Argument(..., help="Output folder: shards, rejects.jsonl, manifest.json. Rerun to resume."),
    text_field: str = typer.Option("text", "--text-field", help="JSONL field holding the text; other fields are kept as metadata."),
    input_format: str = typer.Option("auto", "--input-format", help="auto (.jsonl/.ndjson are JSONL, anything else text), jsonl or text."),
    output_format: str = typer.Option("jsonl", "--output-format", help="jsonl (records) or spacy (DocBin shards, id and meta in doc.user_data)."),
    shard_size: int = typer.Option(10_000, "--shard-size", help="Input lines per shard (the unit of resuming)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Docs per nlp.pipe batch."),
    n_process: int = typer.Option(1, "--n-process", help="Worker processes for nlp.pipe (CPU only)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for the CPU (with --ray: >= 0 gives each worker one GPU)."),
    use_ray: bool = typer.Option(False, "--ray", help="Annotate on Ray Data (needs spacy-electra's ray extra); connects to RAY_ADDRESS or starts a local Ray."),
    ray_workers: Optional[int] = typer.Option(None, "--ray-workers", help="Ray actors (default: one per CPU, or per GPU with --gpu-id)."),
    inference: Optional[str] = typer.Option(None, "--inference", help="Run the ELECTRA encoders as fp32, bf16, int8, onnx or onnx-int8 (CPU; onnx needs spacy-electra's onnx extra). Default: the pipeline's own setting."),
) -> None:
    """Annotate a corpus with a pipeline: streamed, written in shards with a manifest, resumable
    after a crash or Ctrl-C; bad records go to rejects.jsonl with their file, line and reason."""
    from .io import AnnotateError
    from .runner import AnnotateInterrupted, annotate

    try:
        summary = annotate(
            pipeline, input_path, output, text_field=text_field, input_format=input_format,
            output_format=output_format, shard_size=shard_size, batch_size=batch_size, n_process=n_process,
            gpu_id=gpu_id, use_ray=use_ray, ray_workers=ray_workers, inference=inference,
        )
    except AnnotateError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    except AnnotateInterrupted as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(130)
    typer.echo(summary.line())
