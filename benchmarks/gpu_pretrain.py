"""Helpers for the one-shot GPU evidence run (benchmarks/gpu_pretrain.sh).

  probe CONFIG RUN_DIR [--key value ...]   time a few steps, print {"seconds_per_step": ...}
  table RUN_DIR [--every N]   markdown table of discriminator accuracy against its prior per step
  export RUN_DIR PREFIX --what discriminator|generator|mlm
        export a run's last checkpoint in bf16 (HF layout) as a tar split into <= 15 MiB parts,
        because only a few files of at most 16 MiB come back from the machine. Reassemble with
        `cat PREFIX.tar.part* | tar x`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spacy_electra.checkpoint import save_checkpoint  # noqa: E402
from spacy_electra.pieces import WordPieceEncoder  # noqa: E402
from spacy_electra.pretrain.config import PretrainConfig, load_config, parse_overrides  # noqa: E402
from spacy_electra.pretrain.trainer import CHECKPOINT, binary_entropy, build_objective, pretrain  # noqa: E402


def probe(config_path: str, run_dir: str, overrides: list, steps: int) -> None:
    """A short run with the real settings (compile/warm-up included in the first interval), to
    size the budgeted run: the second half's seconds per step are reported."""
    values = parse_overrides(overrides)
    values.update({"training.max_steps": steps, "training.log_every": steps // 2,
                   "training.checkpoint_every": 10 ** 9, "training.progress_bar": False})
    metrics = pretrain(load_config(config_path, values), run_dir)
    print(json.dumps({"seconds_per_step": metrics["seconds_per_step"], "tokens_per_s": metrics["tokens_per_s"]}))


def export(run_dir: Path, prefix: Path, what: str, split_mb: int, keep: Optional[Path] = None) -> None:
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    config = PretrainConfig.from_dict(state["config"])
    vocab = WordPieceEncoder.from_directory(config.corpus.vocab)
    model = build_objective(config, vocab)
    model.load_state_dict(state["model"])
    network = getattr(model, "discriminator" if what == "discriminator" else "generator")
    network = network.to(torch.bfloat16).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / f"{what}_step{state['step']}"
        save_checkpoint(network, folder, vocab=vocab)
        (folder / "pretrain_config.json").write_text(json.dumps(state["config"], indent=2))
        tar = Path(tmp) / "model.tar"
        subprocess.run(["tar", "cf", str(tar), "-C", tmp, folder.name], check=True)
        if keep is not None:  # the same bf16 weights, unpacked, for fine-tuning on the machine
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(folder, keep)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        data = tar.read_bytes()
        size = split_mb * 1024 * 1024
        for i in range(0, len(data), size):
            Path(f"{prefix}.tar.part{i // size:02d}").write_bytes(data[i : i + size])
    print(f"exported {what} at step {state['step']} to {prefix}.tar.part* ({len(data) / 2**20:.1f} MiB)")


def table(run_dir: Path, every: int) -> None:
    """Discriminator accuracy against the "everything is original" prior (1 - replaced fraction):
    a run that learns shows a positive margin that grows; a stalled one sits at zero."""
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for i, r in enumerate(rows) if i % every == 0 or i == len(rows) - 1]
    rtd = "disc_acc" in rows[0]
    columns = ["step", "gen loss", "gen acc"]
    columns += ["disc loss", "prior loss", "disc acc", "prior acc", "margin", "recall"] if rtd else []
    columns.append("tokens/s")
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for r in rows:
        line = f"| {r['step']} | {r['gen_loss']:.3f} | {r['gen_acc']:.3f} |"
        if rtd:
            prior_loss = r.get("prior_loss", binary_entropy(r["replaced_frac"]))
            line += (f" {r['disc_loss']:.4f} | {prior_loss:.4f} | {r['disc_acc']:.4f} | {r['prior_acc']:.4f} |"
                     f" {r['disc_acc'] - r['prior_acc']:+.4f} | {r['disc_recall']:.3f} |")
        print(line + f" {r['tokens_per_s']:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("probe")
    pr.add_argument("config")
    pr.add_argument("run_dir")
    pr.add_argument("--probe-steps", type=int, default=40)
    tb = sub.add_parser("table")
    tb.add_argument("run_dir", type=Path)
    tb.add_argument("--every", type=int, default=1)
    ex = sub.add_parser("export")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("prefix", type=Path)
    ex.add_argument("--what", choices=["discriminator", "generator", "mlm"], default="discriminator")
    ex.add_argument("--split-mb", type=int, default=15)
    ex.add_argument("--keep", type=Path, default=None, help="also leave the unpacked folder here")
    args, rest = p.parse_known_args()
    if args.command == "probe":
        probe(args.config, args.run_dir, rest, args.probe_steps)
        shutil.rmtree(args.run_dir, ignore_errors=True)
    elif args.command == "table":
        table(args.run_dir, args.every)
    else:
        export(args.run_dir, args.prefix, args.what, args.split_mb, args.keep)


if __name__ == "__main__":
    main()
