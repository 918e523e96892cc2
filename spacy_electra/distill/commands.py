"""``spacy-electra distill`` as a typer command (registered in ``cli.py``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import typer


def distill_command(
    ctx: typer.Context,
    teacher: Path = typer.Argument(..., help="Trained spaCy pipeline folder to distill."),
    output: Path = typer.Argument(..., help="Run folder: checkpoints/, model-last, model-best (with --dev), distill_log.jsonl."),
    corpus: Path = typer.Option(..., "--corpus", help="Training text: .spacy (gold kept), .jsonl ({\"text\": ...}), plain text lines, or a folder of them."),
    dev: Optional[Path] = typer.Option(None, "--dev", help=".spacy file with gold annotations, scored every training.eval_every steps."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help="Settings (.cfg), e.g. configs/distill.cfg; the defaults without it."),
    layers: Optional[int] = typer.Option(None, "--layers", help="Student layers (student.layers)."),
    hidden_size: Optional[int] = typer.Option(None, "--hidden-size", help="Narrower student width (student.hidden_size)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Training steps (training.max_steps)."),
) -> None:
    """Distill a trained pipeline (electra_tagger / electra_ner / electra_textcat components,
    own or shared encoders) into one with a smaller encoder, trained on the teacher's soft
    outputs. Rerun the same command to continue an interrupted run. Any setting can be
    overridden with a dotted option, e.g. --loss.temperature 1.0 --student.layer_map [0,2].
    """
    from .config import load_config, parse_overrides
    from .trainer import distill

    overrides: Dict[str, Any] = parse_overrides(ctx.args)
    for key, value in (("student.layers", layers), ("student.hidden_size", hidden_size), ("training.max_steps", max_steps)):
        if value is not None:
            overrides[key] = value
    config = load_config(config_path, overrides)
    result = distill(teacher, output, corpus, config, dev=dev)
    sizes = ", ".join(f"{name}: {n} layers, hidden {h}" for name, (n, h) in result["sizes"].items())
    best = f"; model-best (dev score {result['best']:.3f}) in {output / 'model-best'}" if result["best"] is not None else ""
    typer.echo(f"Wrote {output / 'model-last'} after {result['step']} steps ({sizes}){best}.")
