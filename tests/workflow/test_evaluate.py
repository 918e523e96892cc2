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


def test_compare_scores_both_pipelines_and_writes_one_row_per_task(pipeline, tmp_path):
    """`--compare NAME=PIPELINE` (the adapt workflow): both pipelines on the same dev set, the
    second one's metrics under OUTPUT/NAME, and a comparison row whose difference is computed
    from the two metrics files."""
    import json

    other = tmp_path / "other"
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler", name="ner")  # finds one of the dev doc's two entities
    ruler.add_patterns([{"label": "PER", "pattern": "Alice"}])
    nlp.to_disk(other)
    metrics = tmp_path / "metrics"
    args = ["evaluate", str(pipeline / "pipeline"), "--dev", f"ner={pipeline / 'dev.spacy'}", "--output", str(metrics),
            "--name", "finetune", "--compare", f"adapted={other}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    base = json.loads((metrics / "ner.json").read_text())["scores"]["ents_f"]
    theirs = json.loads((metrics / "adapted" / "ner.json").read_text())["scores"]["ents_f"]
    summary = (metrics / "summary.md").read_text()
    assert "| task | score | finetune | adapted | difference |" in summary
    assert f"| ner | ents_f | {base:.3f} | {theirs:.3f} | {theirs - base:+.3f} |" in summary
    assert theirs > base  # the fixture's ner is untrained
    bad = CliRunner().invoke(app, args[:-1] + ["ner=" + str(other)])
    assert bad.exit_code == 1 and "not a task's name" in bad.output
