"""`spacy-electra evaluate` refuses a dev file that is not a readable .spacy file with docs, in one
line, and a failed evaluation never touches the metrics already in the output folder."""
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin, Span
from spacy.training import Example
from typer.testing import CliRunner

from spacy_electra.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    doc = nlp.make_doc("Alice moved to Paris .")
    doc.ents = [Span(doc, 0, 1, label="PER"), Span(doc, 3, 4, label="LOC")]
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
    nlp.to_disk(folder / "pipeline")
    DocBin(docs=[doc]).to_disk(folder / "dev.spacy")
    DocBin().to_disk(folder / "empty.spacy")
    return folder


def evaluate(pipeline: Path, output: Path, *dev: str):
    args = ["evaluate", str(pipeline / "pipeline"), "--output", str(output)]
    for item in dev:
        args += ["--dev", item]
    return CliRunner().invoke(app, args)


def old_metrics(tmp_path: Path) -> Path:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "summary.md").write_text("earlier run\n")
    (metrics / "ner.json").write_text("{}\n")
    return metrics


@pytest.mark.parametrize("dev, message", [
    (str(ROOT / "README.md"), "is not a .spacy file spaCy can read"),
    ("empty.spacy", "holds no docs"),
    ("missing.spacy", "is missing, not a .spacy file"),
    (".", "is a folder, not a .spacy file"),
])
def test_a_dev_file_that_is_not_a_spacy_file_is_refused(pipeline, tmp_path, dev, message):
    metrics = old_metrics(tmp_path)
    path = dev if Path(dev).is_absolute() else str(pipeline / dev)
    result = evaluate(pipeline, metrics, f"ner={path}")
    assert result.exit_code == 1
    line = result.output.strip()
    assert message in line and "spacy-electra convert" in line and "\n" not in line, line
    assert (metrics / "summary.md").read_text() == "earlier run\n" and (metrics / "ner.json").read_text() == "{}\n"


def test_a_failed_task_leaves_every_metrics_file_as_it_was(pipeline, tmp_path):
    metrics = old_metrics(tmp_path)
    result = evaluate(pipeline, metrics, f"ner={pipeline / 'dev.spacy'}", f"tagger={pipeline / 'dev.spacy'}")
    assert result.exit_code == 1 and "no component 'tagger'" in result.output
    assert sorted(p.name for p in metrics.iterdir()) == ["ner.json", "summary.md"]
    assert (metrics / "summary.md").read_text() == "earlier run\n"


def test_a_good_evaluation_replaces_the_metrics(pipeline, tmp_path):
    metrics = old_metrics(tmp_path)
    result = evaluate(pipeline, metrics, f"ner={pipeline / 'dev.spacy'}")
    assert result.exit_code == 0, result.output
    assert "| ner | 1 | ents_f |" in (metrics / "summary.md").read_text()
    assert sorted(p.name for p in metrics.iterdir()) == ["ner.json", "summary.md"]  # no temporary files left
