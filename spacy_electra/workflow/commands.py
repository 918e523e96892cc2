"""``spacy-electra`` commands used by ``project.yml``: check-data, sample-text, evaluate,
package. Each ends with one line that says what it wrote where."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.command("check-data")
def check_data_command(
    data_dir: Path = typer.Argument(..., help="The workflow's data folder (vars.data_dir)."),
    tasks: List[str] = typer.Option(["pretrain", "tagger", "ner", "textcat", "qa"], "--task", help="Tasks to check."),
    output: Optional[Path] = typer.Option(None, help="Write the list of checked files here (JSON)."),
    workflow: str = typer.Option("demo", help="The workflow about to run: demo (data/demo's slices), all or "
                                 "finetune (the full datasets); all also refuses the demo preset."),
    preset: str = typer.Option("demo", help="vars.preset of that run."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="vars.gpu_id of that run: a GPU id is checked for readiness too."),
    adapt_on: str = typer.Option("", "--adapt-on", help="vars.adapt_on of the adapt workflow: domain also needs data_dir/pretrain."),
) -> None:
    """Fail naming every missing file and where to get it, before any work starts (and, with
    --gpu-id, what the machine lacks for GPU work)."""
    import srsly

    from ..gpu import gpu_problem
    from .data import DataError, check_data

    if workflow == "all" and preset == "demo":
        typer.echo(
            "Error: the `all` workflow is the ELECTRA-small recipe for a GPU, but vars.preset is 'demo'. Run "
            "`spacy project run all . --vars.data_dir ../shared/data --vars.preset small --vars.pretrain_steps 100000 "
            "--vars.pretrain_docs 0 --vars.vocab_size 30522 --vars.train_limit 0 --vars.dev_limit 0 "
            "--vars.tagger_steps 400 --vars.ner_steps 400 --vars.textcat_steps 600 --vars.qa_steps 470 "
            "--vars.eval_frequency 100 --vars.learn_rate 0.0003 "
            "--vars.gpu_id 0` (README: Workflows), or `spacy project run demo` for the CPU demo.",
            err=True,
        )
        raise typer.Exit(1)
    problems = []
    if adapt_on not in ADAPT_ON + ("",):
        problems.append(f"adapt_on={adapt_on!r}: use task (the tasks' own training text) or domain (data_dir/pretrain).")
    if adapt_on == "domain" and "pretrain" not in tasks:
        tasks = [*tasks, "pretrain"]
    try:
        found = check_data(data_dir, tasks, workflow)
    except DataError as err:
        problems.append(str(err))
    gpu = gpu_problem(gpu_id)
    if gpu is not None:
        problems.append(gpu)
    if problems:
        for problem in problems:
            typer.echo(f"Error: {problem}", err=True)
        raise typer.Exit(1)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(output, {"data_dir": str(data_dir), "workflow": workflow, "files": [str(p) for p in found]})
    typer.echo(f"Data complete for {', '.join(tasks)} ({workflow}): {len(found)} files in {data_dir}")


@app.command("download-data")
def download_data_command(
    data_dir: Path = typer.Argument(..., help="Folder for the full datasets (vars.data_dir of `all` / `finetune`)."),
    tasks: List[str] = typer.Option(["pretrain", "tagger", "ner", "textcat", "qa"], "--task", help="Tasks to fetch."),
) -> None:
    """Download every dataset file with a public, checksummed URL; name the rest and their sources.

    Each file goes to a temporary name in its folder, is checked against its MD5 and renamed:
    a failed or cut download leaves nothing behind."""
    from .data import DataError, download_data

    try:
        fetched, present, manual = download_data(data_dir, tasks)
    except DataError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    for path in fetched:
        typer.echo(f"Downloaded {path}")
    for path in present:
        typer.echo(f"Already there (checksum matches): {path}")
    for line in manual:
        typer.echo(f"No public copy, get it yourself: {line}")
    typer.echo(f"Downloaded {len(fetched)} file(s) to {data_dir}; {len(manual)} file(s) to obtain by hand.")


ADAPT_ON = ("task", "domain")
TASK_TEXT = ("tagger", "ner", "textcat", "qa")


@app.command("adapt-text")
def adapt_text_command(
    adapt_on: str = typer.Argument(..., help="task: the tasks' own training text (CORPUS/<task>/train.spacy); domain: DATA_DIR/pretrain."),
    data_dir: Path = typer.Option(..., "--data-dir", help="The workflow's data folder (vars.data_dir)."),
    corpus: Path = typer.Option(Path("corpus"), "--corpus", help="Folder of the converted tasks (<task>/train.spacy)."),
    output: Path = typer.Option(..., "--output", "-o", help="Text file to write (blank-line separated documents)."),
    max_documents: int = typer.Option(0, "--max-documents", help="Random sample of this many documents (0 = all)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """The unlabelled text that continued pretraining adapts the encoder to (workflow adapt)."""
    from .data import DataError, sample_text

    if adapt_on not in ADAPT_ON:
        typer.echo(f"Error: adapt_on={adapt_on!r}: use task (the tasks' own training text) or domain ({data_dir}/pretrain).", err=True)
        raise typer.Exit(1)
    inputs = [corpus / task / "train.spacy" for task in TASK_TEXT] if adapt_on == "task" else [data_dir / "pretrain"]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        typer.echo(f"Error: {', '.join(missing)} not found: run the convert step first (task) or give "
                   "--vars.data_dir with a pretrain/ folder (domain).", err=True)
        raise typer.Exit(1)
    try:
        n = sample_text(inputs, output, max_documents=max_documents, seed=seed)
    except DataError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Wrote {n} documents ({adapt_on} text) to {output}")


@app.command("sample-text")
def sample_text_command(
    inputs: List[Path] = typer.Argument(..., help="Raw-text files or folders."),
    output: Path = typer.Option(..., "--output", "-o", help="Text file to write (blank-line separated documents)."),
    max_documents: int = typer.Option(0, "--max-documents", help="Random sample of this many documents (0 = all)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """A (sampled) raw-text corpus for the vocabulary and pretraining."""
    from .data import DataError, sample_text

    try:
        n = sample_text(inputs, output, max_documents=max_documents, seed=seed)
    except (DataError, ValueError) as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Wrote {n} documents to {output}")


@app.command("evaluate")
def evaluate_command(
    pipeline: str = typer.Argument(..., help="Pipeline folder or installed package name."),
    dev: List[str] = typer.Option(..., "--dev", help="TASK=PATH.spacy; TASK is the component's name. Repeat per task."),
    output: Path = typer.Option(Path("metrics"), "--output", "-o", help="Folder for <task>.json and summary.md."),
    limit: int = typer.Option(0, "--limit", help="Evaluate at most this many dev docs per task (0 = all)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for the CPU."),
    compare: Optional[str] = typer.Option(None, "--compare", help="NAME=PIPELINE: score this pipeline too, into OUTPUT/NAME, with a comparison table."),
    name: str = typer.Option("baseline", "--name", help="What the first pipeline is called in the comparison."),
) -> None:
    """Dev scores (spaCy's keys) and words/s of every task; prints the Markdown table."""
    from ..gpu import GPUNotReady, require_gpu
    from .evaluate import evaluate_tasks

    try:
        require_gpu(gpu_id)
    except GPUNotReady as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    pairs = {}
    for item in dev:
        task, sep, path = item.partition("=")
        if not sep or not path:
            typer.echo(f"Error: --dev {item!r} must be TASK=PATH, e.g. --dev ner=corpus/ner/dev.spacy", err=True)
            raise typer.Exit(1)
        pairs[task] = Path(path)
    other = None
    if compare is not None:
        other_name, sep, other_pipeline = compare.partition("=")
        if not sep or not other_name or not other_pipeline:
            typer.echo(f"Error: --compare {compare!r} must be NAME=PIPELINE, e.g. --compare adapted=training/adapted/assembled", err=True)
            raise typer.Exit(1)
        other = (other_name, other_pipeline)
    try:
        rows = evaluate_tasks(pipeline, pairs, output, limit=limit, compare=other, name=name)
    except (ValueError, OSError) as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo((output / "summary.md").read_text())
    typer.echo(f"Wrote {len(rows)} task metrics and summary.md to {output}")


@app.command("package")
def package_command(
    pipeline: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline folder."),
    output: Path = typer.Argument(..., help="Folder for both wheels."),
    name: str = typer.Option(..., "--name", help="Package name without the language prefix."),
    version: str = typer.Option("0.1.0", "--version"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Install into a fresh virtualenv and load it there."),
    text: str = typer.Option("Apple bought a start-up in London last week .", help="Text annotated by the check."),
    question: Optional[str] = typer.Option("Where was the start-up ?", help="Question for a QA component."),
    constraints: Optional[Path] = typer.Option(None, help="pip constraints for the fresh virtualenv (pins torch)."),
    keep_venv: Optional[Path] = typer.Option(None, help="Create the check's virtualenv here and keep it (else a temporary one)."),
    source: Optional[Path] = typer.Option(None, help="spacy-electra source folder to build its wheel from (default: the folder it was installed from)."),
    metrics: Optional[Path] = typer.Option(None, help="The folder `evaluate` wrote: its dev scores go into the packaged meta.json (performance)."),
) -> None:
    """Build the pipeline's wheel and spacy-electra's own wheel; check them in a fresh virtualenv."""
    import json

    from .package import PackageError, build_wheels, verify_wheels

    lang = json.loads((pipeline / "meta.json").read_text()).get("lang", "en")
    try:
        wheels = build_wheels(pipeline, output, name=name, version=version, source=source, metrics=metrics)
        typer.echo(f"Built {wheels[0].name} and {wheels[1].name}")
        if verify:
            if keep_venv is not None and keep_venv.exists():
                import shutil

                shutil.rmtree(keep_venv)
            result = verify_wheels(wheels, f"{lang}_{name}", text=text, question=question, constraints=constraints,
                                   keep_venv=keep_venv.resolve() if keep_venv is not None else None)
            typer.echo(f"Fresh virtualenv, spacy.load({lang + '_' + name!r}): {json.dumps(result)}")
    except PackageError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"Wrote {output}. Install both wheels together: pip install {wheels[0]} {wheels[1]}; "
        f"then spacy.load({lang + '_' + name!r})."
    )
