"""The Pareto benchmark's bookkeeping (benchmarks/pareto.py): rows per inference kind, CPU-minutes
from /usr/bin/time's JSON, and the table's ratios, on hand-made values."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from pareto import cpu_minutes, systems, table  # noqa: E402


def test_one_row_per_kind_and_one_for_spacy_pipelines():
    rows = systems(["teacher=/p/t:fp32,int8", "cnn=/p/c"])
    assert rows == [("teacher/fp32", "/p/t", "fp32"), ("teacher/int8", "/p/t", "int8"), ("cnn", "/p/c", None)]


def test_cpu_minutes_are_user_plus_sys(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"wall_s": 999.0, "user_s": 90.0, "sys_s": 30.0}))
    assert cpu_minutes(f"student={path}") == ("student", 2.0)


def test_table_rows_show_score_speed_ratio_and_minutes():
    result = {
        "threads": [1], "score_key": "ents_f", "baseline": "cnn",
        "rows": [
            {"name": "s/int8", "score": 87.361, "words_per_second": {"1": 6873.0}, "ratio": {"1": 0.375}, "distill_cpu_minutes": 40.5},
            {"name": "cnn", "score": 88.26, "words_per_second": {"1": 18330.0}, "ratio": {"1": 1.0}, "distill_cpu_minutes": None},
        ],
    }
    lines = table(result).splitlines()
    assert lines[0].startswith("| system | kind | dev ents_f | words/s (1 thr) | x cnn (1 thr)")
    assert lines[2] == "| s | int8 | 87.36 | 6,873 | 0.38x | 40.5 |"
    assert lines[3] == "| cnn | - | 88.26 | 18,330 | 1.00x | - |"
