"""The adaptation table's bookkeeping (benchmarks/adapt_table.py): best scores from spaCy's
model-best, mean, sample sd and difference to the unadapted arm, on hand-made runs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from adapt_table import main, summarize  # noqa: E402


def fake_run(folder: Path, score: float) -> str:
    (folder / "model-best").mkdir(parents=True)
    (folder / "model-best" / "meta.json").write_text(json.dumps({"performance": {"cats_score": score}}))
    return str(folder)


def test_arms_get_mean_sd_and_difference_to_none():
    rows = summarize({"rtd": {1: 89.0, 0: 88.0}, "none": {0: 87.0, 1: 88.0, 2: 89.0}, "mlm": {0: 90.0}})
    assert [r["arm"] for r in rows] == ["none", "mlm", "rtd"]
    none, mlm, rtd = rows
    assert none["mean"] == 88.0 and none["sd"] == pytest.approx(1.0) and none["difference"] is None
    assert rtd["seeds"] == [0, 1] and rtd["scores"] == [88.0, 89.0] and rtd["difference"] == pytest.approx(0.5)
    assert mlm["sd"] is None and mlm["difference"] == pytest.approx(2.0)


def test_table_reads_runs_and_pretraining_cost(tmp_path, capsys):
    runs = [f"none:0:{fake_run(tmp_path / 'n0', 0.87)}", f"rtd:0:{fake_run(tmp_path / 'r0', 0.8812)}"]
    pre = tmp_path / "pre_rtd"
    pre.mkdir()
    (pre / "train_log.jsonl").write_text(json.dumps({"step": 300, "disc_loss": 0.25, "prior_loss": 0.4, "disc_auc": 0.9}) + "\n")
    (tmp_path / "pre_rtd.time.json").write_text(json.dumps({"wall_s": 1.0, "user_s": 1140.0, "sys_s": 60.0}))
    main(["--task", "SST-2", "--score", "cats_score", *sum((["--run", r] for r in runs), []), "--pretrain", f"rtd:{pre}"])
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("| SST-2 | none | 87.00 (0) | 87.00 |")
    assert "| 88.12 (0) | 88.12 |  | +1.12 | 20.0 CPU-min, 300 steps; at the end disc loss 0.250 vs prior 0.400, AUC 0.900 |" in out[3]
