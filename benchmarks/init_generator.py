"""Which generator to build when pretraining starts from an encoder alone ([init] discriminator
without a generator): the encoder's lower layers with a fresh MLM head tied to the embeddings
(``lower_layers``), or a fresh generator a fraction as wide (``fresh``). Also the loss of the
first step against a random-init run of the same shape.

    OMP_NUM_THREADS=2 python benchmarks/init_generator.py ENCODER TEXT_FOLDER WORK_DIR [STEPS [MODE]]

(MODE runs one of lower_layers, fresh, random only, so two can run side by side; the last
call, without MODE, prints the table.)

Writes WORK_DIR/{lower_layers,fresh,random}/train_log.jsonl and prints a summary table (the
numbers in benchmarks/results/init_generator.txt).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List

import torch


def settings(work: Path, text: str, steps: int) -> Dict[str, object]:
    return {
        "corpus.train": [text], "corpus.cache": str(work / "packed_128"), "corpus.max_documents": 1500,
        "corpus.seq_length": 128, "corpus.workers": 1,
        "training.max_steps": steps, "training.batch_size": 8, "training.learning_rate": 1e-4,
        "training.warmup_steps": 10, "training.device": "cpu", "training.log_every": 1,
        "training.checkpoint_every": steps, "training.progress_bar": False,
    }


def windows(log: List[dict], size: int) -> List[dict]:
    out = []
    for start in range(0, len(log), size):
        chunk = log[start:start + size]
        means = {key: sum(r[key] for r in chunk) / len(chunk)
                 for key in ("gen_loss", "gen_acc", "disc_loss", "prior_loss", "disc_acc", "prior_acc")}
        out.append({**means, "steps": f"{chunk[0]['step']}-{chunk[-1]['step']}"})
    return out


def main() -> None:
    from spacy_electra.pretrain import load_config, pretrain

    encoder, text, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 150
    only = sys.argv[5] if len(sys.argv) > 5 else None
    torch.set_num_threads(1 if only else 2)
    base = settings(work, text, steps)
    for mode in ("lower_layers", "fresh"):
        if only in (None, mode) and not (work / mode / "discriminator").exists():
            pretrain(load_config(None, {**base, "init.discriminator": encoder, "init.build_generator": mode}), work / mode)
    if only in (None, "random") and not (work / "random" / "discriminator").exists():
        disc = json.loads((Path(encoder) / "config.json").read_text())
        shape = {f"model.{k}": disc[k] for k in ("embedding_size", "hidden_size", "num_hidden_layers",
                                                  "num_attention_heads", "intermediate_size")}
        pretrain(load_config(None, {**base, **shape, "model.size": "custom", "training.max_steps": 10, "training.warmup_steps": 1,
                                    "corpus.vocab": encoder}), work / "random")
    if only:
        return
    for mode in ("lower_layers", "fresh", "random"):
        log = [json.loads(line) for line in (work / mode / "train_log.jsonl").read_text().splitlines()]
        first = log[0]
        print(f"\n{mode}: step 1 (loss of the untrained step-0 weights) gen_loss {first['gen_loss']:.3f} "
              f"disc_loss {first['disc_loss']:.4f} total {first['gen_loss'] + 50 * first['disc_loss']:.2f}; "
              f"{log[-1]['seconds_per_step']:.2f} s/step")
        print("steps      gen_loss gen_acc disc_loss (prior)  disc_acc (prior)")
        for w in windows(log, 25 if len(log) > 25 else len(log)):
            print(f"{w['steps']:>9}  {w['gen_loss']:7.3f} {w['gen_acc']:7.3f} {w['disc_loss']:9.4f} ({w['prior_loss']:.4f})"
                  f"  {w['disc_acc']:.4f} ({w['prior_acc']:.4f})")


if __name__ == "__main__":
    main()
