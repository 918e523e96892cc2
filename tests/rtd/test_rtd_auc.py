"""benchmarks/rtd_auc.py: the AUC and the corruption it reports on, and one small run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..conftest import make_hf_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from rtd_auc import corrupt, main, read_conll_sentences, roc_auc  # noqa: E402

CONLL = "-DOCSTART- -X- -X- O\n\nthe NN O O\ncity NN O O\nof NN O O\nparis NN O B-LOC\n. . O O\n\nhe NN O O\nwas NN O O\nin NN O O\nlondon NN O B-LOC\n\n"


def test_roc_auc_by_hand():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1, 0, 1]), np.ones(4)) == 0.5  # ties count one half
    assert roc_auc(np.array([0, 1]), np.array([1.0, 0.0])) == 0.0
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_corruption_replaces_the_share_asked_with_other_words_of_the_set():
    sentences = [[f"w{i % 17}" for i in range(j, j + 12)] for j in range(50)]
    corrupted, labels, counts = corrupt(sentences, 0.1, seed=3)
    flat = [(o, c, y) for so, sc, sy in zip(sentences, corrupted, labels) for o, c, y in zip(so, sc, sy)]
    assert sum(y for _, _, y in flat) == 60  # 10% of 600 words
    assert all((o != c) == bool(y) for o, c, y in flat) and all(c in counts for _, c, _ in flat)
    assert corrupt(sentences, 0.1, seed=3)[0] == corrupted  # seeded


def test_one_small_run_and_a_clean_skip_without_data(tmp_path, capsys):
    data = tmp_path / "valid.txt"
    data.write_text(CONLL)
    assert read_conll_sentences(data) == [["the", "city", "of", "paris", "."], ["he", "was", "in", "london"]]
    make_hf_checkpoint(tmp_path / "disc", "ElectraForPreTraining", random_all=False)
    out = tmp_path / "result.json"
    assert main([str(tmp_path / "disc"), "--data", str(data), "--rate", "0.3", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["words"], result["replaced"]) == (9, 3) and 0.0 <= result["auc_discriminator"] <= 1.0
    assert main([str(tmp_path / "disc"), "--data", str(tmp_path / "missing.txt")]) == 0
    assert "skipped: no data file at" in capsys.readouterr().out
