"""What continued pretraining buys (issue #26 item 4): fine-tunes from the unadapted encoder, from
continued RTD and from the continued masked-LM control, side by side, per seed.

    .venv/bin/python benchmarks/adapt_table.py --task SST-2 --score cats_score \\
        --run none:0:runs/sst2_electra --run none:1:runs/ft_sst2_none_s1 \\
        --run rtd:0:runs/ft_sst2_rtd_s0 --run mlm:0:runs/ft_sst2_mlm_s0 \\
        --pretrain rtd:runs/pre_rtd_sst2 --pretrain mlm:runs/pre_mlm_sst2

Each ``--run ARM:SEED:FOLDER`` is one ``spacy train`` output; its score is the best dev score of
the run (``model-best/meta.json``, key ``--score``), the number ``spacy train`` selects a model
by. Each ``--pretrain ARM:FOLDER`` is a ``spacy-electra pretrain`` output with
``FOLDER.time.json`` (``/usr/bin/time -o`` JSON) beside it: its CPU-minutes (user + sys) and the
last line of its ``train_log.jsonl`` go into the table. Per arm: every seed's score, the mean,
the sample standard deviation, and the mean's difference to the ``none`` arm. Prints markdown;
not a test: the numbers go into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Tuple


def best_score(folder: Path, key: str) -> float:
    """The run's best dev score in percent (spaCy's model-best)."""
    meta = json.loads((folder / "model-best" / "meta.json").read_text())
    return 100 * float(meta["performance"][key])


def cpu_minutes(time_json: Path) -> float:
    times = json.loads(time_json.read_text())
    return (float(times["user_s"]) + float(times["sys_s"])) / 60


def last_log(folder: Path) -> Dict[str, float]:
    lines = (folder / "train_log.jsonl").read_text().splitlines()
    return json.loads(lines[-1]) if lines else {}


def summarize(scores: Dict[str, Dict[int, float]]) -> List[Dict[str, object]]:
    """One row per arm (``none`` first): seeds in order, mean, sample sd (None for one seed) and
    the mean's difference to ``none`` (None without a ``none`` arm)."""
    base = statistics.mean(scores["none"].values()) if scores.get("none") else None
    rows = []
    for arm in sorted(scores, key=lambda a: (a != "none", a)):
        values = [scores[arm][seed] for seed in sorted(scores[arm])]
        mean = statistics.mean(values)
        rows.append({
            "arm": arm, "seeds": sorted(scores[arm]), "scores": values, "mean": mean,
            "sd": statistics.stdev(values) if len(values) > 1 else None,
            "difference": None if base is None or arm == "none" else mean - base,
        })
    return rows


def pretrain_cell(info: Optional[Tuple[float, Dict[str, float]]]) -> str:
    if info is None:
        return ""
    minutes, log = info
    if log.get("disc_loss") is not None and log.get("prior_loss"):
        end = f"disc loss {log['disc_loss']:.3f} vs prior {log['prior_loss']:.3f}, AUC {log.get('disc_auc') or 0:.3f}"
    else:
        end = f"gen acc {log.get('gen_acc', 0):.3f}"
    return f"{minutes:.1f} CPU-min, {log.get('step', '?')} steps; at the end {end}"


def table(task: str, rows: List[Dict[str, object]], pretrain: Dict[str, Tuple[float, Dict[str, float]]]) -> str:
    out = ["| task | start | dev per seed | mean | sd | vs none | continued pretraining |",
           "| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for row in rows:
        seeds = ", ".join(f"{score:.2f} ({seed})" for seed, score in zip(row["seeds"], row["scores"]))  # type: ignore[call-overload]
        sd = "" if row["sd"] is None else f"{row['sd']:.2f}"
        diff = "" if row["difference"] is None else f"{row['difference']:+.2f}"
        out.append(f"| {task} | {row['arm']} | {seeds} | {row['mean']:.2f} | {sd} | {diff} | "
                   f"{pretrain_cell(pretrain.get(str(row['arm'])))} |")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--score", required=True, help="model-best/meta.json performance key, e.g. ents_f")
    parser.add_argument("--run", action="append", default=[], help="ARM:SEED:FOLDER (a spacy train output)")
    parser.add_argument("--pretrain", action="append", default=[], help="ARM:FOLDER (a pretrain output)")
    args = parser.parse_args(argv)
    scores: Dict[str, Dict[int, float]] = {}
    for spec in args.run:
        arm, seed, folder = spec.split(":", 2)
        scores.setdefault(arm, {})[int(seed)] = best_score(Path(folder), args.score)
    pretrain = {}
    for spec in args.pretrain:
        arm, folder = spec.split(":", 1)
        pretrain[arm] = (cpu_minutes(Path(folder + ".time.json")), last_log(Path(folder)))
    print(table(args.task, summarize(scores), pretrain))


if __name__ == "__main__":
    main()
