"""Installable wheels of a trained pipeline, and a check that they work on their own.

``spacy package --build wheel`` packages the pipeline; its meta lists ``spacy-electra`` as a
requirement (spaCy finds our registered functions in the config), which pip can only satisfy if
our own wheel sits beside it, so both wheels are built into one folder. ``verify_wheels``
installs them into a fresh virtualenv and loads the pipeline by name in a new process, from a
temporary folder with the Hub switched off: it passes only if nothing outside the wheels is read.

With ``metrics`` (the folder ``evaluate`` writes), the packaged ``meta.json`` carries the dev
scores under ``performance``, with spaCy's keys, as spaCy's own pipelines do, beside each task's
words/s and dev size: the scores travel with the wheel instead of staying in the project. The
pipeline folder itself is not modified (``spacy package --meta-path`` takes the merged copy).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional


def installed_source() -> Path:
    """The source folder spacy-electra was installed from (``pip install -e .`` or ``pip install
    PATH`` record it in the distribution's ``direct_url.json``, PEP 610). The package never
    assumes it runs from a checkout: an install from an index has no source folder, and then
    ``--source`` must name one."""
    from importlib.metadata import distributions
    from urllib.parse import unquote, urlparse

    # Every distribution of that name, not just the first: a source folder's own
    # ``spacy_electra.egg-info`` (no direct_url.json) shadows the install when run from there.
    record: dict = {}
    for dist in distributions():
        if (dist.metadata["Name"] or "").lower().replace("_", "-") != "spacy-electra":
            continue
        try:
            record = json.loads(dist.read_text("direct_url.json") or "{}")
        except ValueError:
            record = {}
        if record.get("url"):
            break
    url = urlparse(record.get("url", ""))
    folder = Path(unquote(url.path)) if url.scheme == "file" else None
    if folder is None or not (folder / "setup.cfg").is_file():
        raise PackageError(
            "spacy-electra was not installed from a source folder, so its wheel cannot be rebuilt here: "
            "pass --source /path/to/spacy-electra (a checkout), or install it with pip install -e PATH."
        )
    return folder


class PackageError(RuntimeError):
    """A packaging step failed; the message says which one and why."""


def _run(cmd: List[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise PackageError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


def meta_with_performance(pipeline: Path, metrics: Path) -> dict:
    """The pipeline's ``meta.json`` with the scores of every ``metrics/<task>.json`` under
    ``performance`` (spaCy's keys: ``tag_acc``, ``ents_f``, ``cats_score``, ``qa_exact``...),
    plus ``<task>_words_per_second`` and ``<task>_dev_docs``. Refuses metrics of a component
    the pipeline lacks (left from another pipeline) and a folder without any."""
    meta = json.loads((pipeline / "meta.json").read_text())
    pipes = set(meta.get("pipeline") or []) | set(meta.get("components") or [])
    files = sorted(metrics.glob("*.json")) if metrics.is_dir() else []
    if not files:
        raise PackageError(f"--metrics {metrics} holds no <task>.json: run `spacy-electra evaluate {pipeline} "
                           f"--dev TASK=DEV.spacy --output {metrics}` first, or leave --metrics out.")
    performance = dict(meta.get("performance") or {})
    for path in files:
        try:
            row = json.loads(path.read_text())
            task, scores = row["task"], row["scores"]
            speed, n_docs = float(row["words_per_second"]), int(row["n_docs"])
        except (ValueError, KeyError, TypeError) as err:
            raise PackageError(f"{path} is not a metrics file written by `spacy-electra evaluate` ({err!r}).") from err
        if task not in pipes:
            raise PackageError(f"{path} scores a component {task!r} that {pipeline} lacks (it has "
                               f"{', '.join(sorted(pipes))}): evaluate this pipeline again into an empty folder.")
        performance.update({k: v for k, v in scores.items() if isinstance(v, (int, float))})
        performance[f"{task}_words_per_second"] = round(speed, 1)
        performance[f"{task}_dev_docs"] = n_docs
    meta["performance"] = performance
    return meta


def build_wheels(pipeline: Path, output: Path, *, name: str, version: str, source: Optional[Path] = None,
                 metrics: Optional[Path] = None) -> List[Path]:
    """Build the pipeline's wheel (``spacy package --build wheel``) and spacy-electra's own
    wheel from ``source`` (default: ``installed_source()``) into ``output``; returns both paths.
    With ``metrics``, the packaged meta carries the dev scores (``meta_with_performance``)."""
    source = source if source is not None else installed_source()
    meta = meta_with_performance(pipeline, metrics) if metrics is not None else json.loads((pipeline / "meta.json").read_text())
    output.mkdir(parents=True, exist_ok=True)
    package_name = f"{meta.get('lang', 'en')}_{name}"
    with tempfile.TemporaryDirectory() as tmp:
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps(meta, indent=2))
        _run([sys.executable, "-m", "spacy", "package", str(pipeline), str(output), "--name", name,
              "--version", version, "--build", "wheel", "--force", "--meta-path", str(meta_path)], "spacy package")
    pipeline_wheels = sorted((output / f"{package_name}-{version}" / "dist").glob("*.whl"))
    if not pipeline_wheels:
        raise PackageError(f"spacy package wrote no wheel under {output / f'{package_name}-{version}'}.")
    for old in output.glob("spacy_electra-*.whl"):
        old.unlink()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(output),
          str(source)], "building the spacy-electra wheel")
    own = sorted(output.glob("spacy_electra-*.whl"))
    if not own:
        raise PackageError(f"pip wheel wrote no spacy_electra wheel into {output}.")
    return [own[-1], pipeline_wheels[-1]]


CHECK_SCRIPT = r"""
import json, sys, spacy
nlp = spacy.load(sys.argv[1])
text = sys.argv[2]
doc = nlp(text)
out = {
    "pipeline": nlp.pipe_names,
    "tags": [t.tag_ or t.pos_ for t in doc],
    "ents": [(e.text, e.label_) for e in doc.ents],
    "cats": doc.cats,
}
if len(sys.argv) > 3 and "qa" in nlp.pipe_names:
    result = nlp.get_pipe("qa").answer(text, [sys.argv[3]])[0]
    out["qa"] = {"question": sys.argv[3], "answer": None if result.span is None else result.span.text}
print(json.dumps(out))
"""


def verify_wheels(
    wheels: List[Path], package: str, *, text: str, question: Optional[str] = None,
    constraints: Optional[Path] = None, keep_venv: Optional[Path] = None,
) -> dict:
    """Install ``wheels`` into a fresh virtualenv and annotate ``text`` with ``spacy.load(package)``
    in a new process, run from an empty temporary folder with ``HF_HUB_OFFLINE=1``."""
    work = Path(tempfile.mkdtemp(prefix="spacy-electra-verify-"))
    venv = keep_venv or work / "venv"
    try:
        _run([sys.executable, "-m", "venv", str(venv)], "creating a virtualenv")
        python = venv / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "-q", *map(str, wheels)]
        if constraints is not None and constraints.exists():
            pip += ["-c", str(constraints)]
        _run(pip, "installing the wheels into a fresh virtualenv")
        script = work / "check.py"
        script.write_text(CHECK_SCRIPT)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["HF_HUB_OFFLINE"] = "1"
        args = [str(python), str(script), package, text] + ([question] if question else [])
        proc = _run(args, f"loading {package} in the fresh virtualenv", cwd=work, env=env)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if keep_venv is None:
            shutil.rmtree(work, ignore_errors=True)
