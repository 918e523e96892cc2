"""The packaged pipeline's meta carries the dev scores `evaluate` wrote (`performance`, spaCy's
keys), and `spacy package` puts that meta into the package without touching the pipeline folder.
The full build and a fresh-virtualenv load are in test_project.py."""
import json
import subprocess
import sys

import pytest
import spacy

from spacy_electra.workflow.package import PackageError, meta_with_performance


@pytest.fixture
def evaluated(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer", name="ner")  # any component named like the task it is scored as
    nlp.to_disk(tmp_path / "pipeline")
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    row = {"task": "ner", "dev": "corpus/ner/dev.spacy", "n_docs": 20, "n_words": 400,
           "words_per_second": 1234.567, "scores": {"ents_f": 0.5, "ents_p": 0.4, "ents_r": 0.75}}
    (metrics / "ner.json").write_text(json.dumps(row))
    (metrics / "summary.md").write_text("| table |\n")
    return tmp_path


def test_scores_words_per_second_and_dev_size_go_under_performance(evaluated):
    before = (evaluated / "pipeline" / "meta.json").read_bytes()
    meta = meta_with_performance(evaluated / "pipeline", evaluated / "metrics")
    assert meta["performance"] == {"ents_f": 0.5, "ents_p": 0.4, "ents_r": 0.75, "ner_words_per_second": 1234.6,
                                   "ner_dev_docs": 20}
    assert (evaluated / "pipeline" / "meta.json").read_bytes() == before  # the pipeline folder is untouched


def test_stale_empty_or_foreign_metrics_are_refused(evaluated):
    row = json.loads((evaluated / "metrics" / "ner.json").read_text())
    (evaluated / "metrics" / "textcat.json").write_text(json.dumps({**row, "task": "textcat"}))
    with pytest.raises(PackageError, match="'textcat' that .* lacks"):
        meta_with_performance(evaluated / "pipeline", evaluated / "metrics")
    (evaluated / "metrics" / "textcat.json").write_text("{}")
    with pytest.raises(PackageError, match="not a metrics file"):
        meta_with_performance(evaluated / "pipeline", evaluated / "metrics")
    with pytest.raises(PackageError, match="holds no <task>.json"):
        meta_with_performance(evaluated / "pipeline", evaluated / "nowhere")


def test_spacy_package_writes_the_merged_meta(evaluated, tmp_path):
    meta = meta_with_performance(evaluated / "pipeline", evaluated / "metrics")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "out").mkdir()
    proc = subprocess.run([sys.executable, "-m", "spacy", "package", str(evaluated / "pipeline"), str(tmp_path / "out"),
                           "--name", "t", "--version", "0.1.0", "--build", "none", "--meta-path",
                           str(tmp_path / "meta.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    packaged = json.loads((tmp_path / "out" / "en_t-0.1.0" / "meta.json").read_text())
    assert packaged["performance"]["ents_f"] == 0.5 and packaged["performance"]["ner_dev_docs"] == 20
