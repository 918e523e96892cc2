"""The markdown table of ``benchmarks/recipes.sh``'s ``OUT/results.jsonl``: per task, ours vs
spaCy's, dev score, train CPU-minutes, evaluation words/s and the ratios.

    .venv/bin/python benchmarks/recipes_table.py training/recipes/results.jsonl
"""
import json
import sys
from pathlib import Path

# The dev score each task is judged by (spaCy's keys); accuracy for the single-label textcats is
# micro-F, which equals accuracy when every doc has exactly one gold and one predicted label.
SCORES = {"conll": "ents_f", "wnut": "ents_f", "ud": "tag_acc", "sst2": "cats_micro_f", "ag": "cats_micro_f"}


def main(path: Path) -> None:
    rows = {}
    for line in path.read_text().splitlines():
        result = json.loads(line)
        task, system = result["run"].split(".", 1)
        rows[(task, system)] = result  # a rerun replaces the earlier line
    print("| task | system | dev score | train CPU-min | train wall-min | words/s | score diff | speed ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for task, key in SCORES.items():
        systems = [(s, r) for (t, s), r in rows.items() if t == task]
        systems.sort(key=lambda sr: 0 if "electra" in sr[0] or "minilm" in sr[0] else 1)
        if not systems:
            continue
        base_score = systems[-1][1]["eval"][key]
        base_speed = systems[-1][1]["eval"]["speed"]
        for system, result in systems:
            timing = result.get("train_time") or {}
            cpu = (timing["user_s"] + timing["sys_s"]) / 60 if timing else None
            wall = timing["wall_s"] / 60 if timing else None
            score, speed = result["eval"][key], result["eval"]["speed"]
            print(
                f"| {task} | {system} | {100 * score:.2f} ({key}) | {fmt(cpu)} | {fmt(wall)} | {speed:,.0f} | "
                f"{100 * (score - base_score):+.2f} | {speed / base_speed:.3g}x |"
            )


def fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "training/recipes/results.jsonl"))
