"""CPU forward-pass speed: our ELECTRA encoder against HF ``ElectraModel`` on the same batches.

Builds a random ELECTRA-small-shaped ``ElectraModel``, saves it, loads it with
``spacy_electra.checkpoint.load_checkpoint`` and checks both give the same hidden states. Then it times
forward passes under ``torch.inference_mode()``, alternating ours and HF's in every repetition
(and flipping which goes first) so that noise from other jobs on a shared machine hits both
alike, and prints a markdown table of medians.

    .venv/bin/python benchmarks/bench_encoder.py --threads 2 --repeats 10

The time ratio is ours / HF: below 1.00 means ours is faster. Not a test: numbers go into
BENCHMARKS.md by hand.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

ELECTRA_SMALL = dict(
    vocab_size=30522, embedding_size=128, hidden_size=256, num_hidden_layers=12,
    num_attention_heads=4, intermediate_size=1024, max_position_embeddings=512,
)
PARITY_TOLERANCE = 1e-4

Batch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed forward passes per model and shape")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes per model and shape first")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 8], help="batch sizes, paired with --length")
    parser.add_argument("--length", type=int, nargs="+", default=[128, 512], help="padded lengths, paired with --batch")
    parser.add_argument("--min-fill", type=float, default=0.6,
                        help="shortest row as a fraction of the padded length (rows are padded up to it)")
    parser.add_argument("--hf-attn", nargs="+", default=["default", "eager", "sdpa"],
                        help="HF attention implementations to compare against ('default' = what HF picks)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.batch) != len(args.length):
        parser.error("--batch and --length take the same number of values (they are paired).")
    return args


def make_batch(batch: int, length: int, min_fill: float, vocab_size: int, seed: int) -> Batch:
    """Random ids with a [CLS] ... [SEP] frame; rows get random lengths so the mask matters.
    The first row always fills ``length`` so the batch really is that wide."""
    gen = torch.Generator().manual_seed(seed)
    shortest = max(2, int(length * min_fill))
    lengths = torch.randint(shortest, length + 1, (batch,), generator=gen)
    lengths[0] = length
    ids = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        ids[row, :n] = torch.randint(1000, vocab_size, (n,), generator=gen)
        ids[row, 0], ids[row, n - 1] = 101, 102
        mask[row, :n] = 1
    types = torch.zeros_like(ids)
    return ids, mask, types


def build_models(directory: Path, attn_impls: List[str]):
    """Save one random HF ElectraModel and load it as ours and as HF with each attention
    implementation. Returns (ours, {label: hf_model}, {label: note})."""
    import transformers

    from spacy_electra.checkpoint import load_checkpoint

    torch.manual_seed(0)
    config = transformers.ElectraConfig(**ELECTRA_SMALL)
    transformers.ElectraModel(config).eval().save_pretrained(directory, safe_serialization=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = load_checkpoint(directory).eval()
    hf: Dict[str, torch.nn.Module] = {}
    notes: Dict[str, str] = {}
    for impl in attn_impls:
        kwargs = {} if impl == "default" else {"attn_implementation": impl}
        try:
            model = transformers.ElectraModel.from_pretrained(directory, **kwargs).eval()
        except (ValueError, ImportError) as err:  # e.g. "does not support sdpa"
            notes[impl] = f"not available: {str(err).splitlines()[0][:160]}"
            continue
        resolved = model.config._attn_implementation
        duplicate = next((label for label, m in hf.items() if m.config._attn_implementation == resolved), None)
        if duplicate is not None:
            notes[impl] = f"resolves to {resolved!r}, same as HF {duplicate}; not timed twice"
            continue
        label = f"{impl} ({resolved})" if impl == "default" else impl
        hf[label] = model
        notes[impl] = f"timed as HF {label}"
    return ours, hf, notes


def check_parity(ours: torch.nn.Module, hf: Dict[str, torch.nn.Module], batch: Batch) -> Dict[str, float]:
    """Max absolute difference of the last hidden states over the real (unpadded) positions."""
    ids, mask, types = batch
    real = mask.bool()
    diffs = {}
    with torch.inference_mode():
        mine = ours(ids, mask, types)
        for label, model in hf.items():
            theirs = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            diffs[label] = (mine[real] - theirs[real]).abs().max().item()
    bad = {k: v for k, v in diffs.items() if not v <= PARITY_TOLERANCE}
    if bad:
        raise SystemExit(f"Outputs differ from HF beyond {PARITY_TOLERANCE}: {bad}. Fix parity before timing.")
    return diffs


def time_interleaved(runners: Dict[str, Callable[[], object]], repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Seconds per call for each runner; every repetition runs all of them, rotating the order."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    names = list(runners)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
    return times


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        ours, hf, notes = build_models(Path(tmp), args.hf_attn)
    if not hf:
        raise SystemExit(f"No HF model could be built: {notes}")
    baseline = next(iter(hf))

    print(f"- command: `python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}`")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"- machine: {cpu_name()}, {torch.get_num_threads()} torch threads "
          f"(os.cpu_count={os.cpu_count()})")
    print(f"- torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    for impl, note in notes.items():
        print(f"- HF attn_implementation={impl}: {note}")
    print(f"- {args.repeats} timed passes (after {args.warmup} warm-up) per model and shape, "
          "interleaved; rows padded to the batch width\n")

    header = "| batch x length | real tokens | model | median ms | min ms | IQR ms | tokens/s | max abs diff | ours / HF time |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for shape_i, (b, length) in enumerate(zip(args.batch, args.length)):
        batch = make_batch(b, length, args.min_fill, ELECTRA_SMALL["vocab_size"], args.seed + shape_i)
        ids, mask, types = batch
        diffs = check_parity(ours, hf, batch)
        runners: Dict[str, Callable[[], object]] = {"ours": lambda: ours(ids, mask, types)}
        for label, model in hf.items():
            runners[f"HF {label}"] = (
                lambda m=model: m(input_ids=ids, attention_mask=mask, token_type_ids=types)
            )
        with torch.inference_mode():
            times = time_interleaved(runners, args.repeats, args.warmup)
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        n_real = int(mask.sum())
        for name, ts in times.items():
            q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0], ts[0], ts[0]]
            if name == "ours":
                diff, ratio = "", ""
            else:
                label = name[3:]
                diff = f"{diffs[label]:.1e}"
                ratio = f"**{medians['ours'] / medians[name]:.2f}**"
            print(f"| {b} x {length} | {n_real} | {name} | {medians[name] * 1e3:.1f} | {min(ts) * 1e3:.1f} | "
                  f"{(q[2] - q[0]) * 1e3:.1f} | {n_real / medians[name]:,.0f} | {diff} | {ratio} |")
        sys.stdout.flush()
    print(f"\ntokens/s counts real (unpadded) tokens at the median; the ratio is of medians, < 1.00 means "
          f"ours is faster than HF {baseline}. min ms is the least-disturbed pass on a shared machine.")


if __name__ == "__main__":
    main()
