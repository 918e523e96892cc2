"""Process memory over a `spacy train` run of one config, sampled at every step.

Runs spaCy's training loop in this process (the same steps as `python -m spacy train`: the
config, the overrides, init_nlp, then spacy.training.loop.train) with a `[training.before_update]`
callback that records, before every update (so the sample at step k covers update k-1 and the
evaluation that followed it, if any):

  rss_mb           VmRSS of this process (/proc/self/status)
  inuse_mb         bytes glibc malloc has handed out and not got back (mallinfo2 uordblks + hblkhd)
  free_mb          bytes glibc holds free inside its arenas (mallinfo2 fordblks): RSS that is
                   not in use (fragmentation / high-water mark) shows up here, a leak does not
  pieces           padded word pieces the encoder ran in that training update (sum of rows x length)
  max_len          longest window (pieces) in that update; max_pieces_so_far its running maximum
  eval_pieces      padded pieces of the evaluation that ran after that update (0 if none)

and every --deep-every steps the live Python objects (gc) and torch tensors (count and bytes).
A leak keeps growing while the batch shapes stay within what was seen before, and shows in
inuse_mb and the tensor count; a high-water mark rises only when a new largest batch arrives, then
plateaus. Resident memory that grows while inuse_mb stays flat is malloc keeping freed memory
(free_mb): `--trim-every N` hands it back to the OS every N steps, as the
spacy_electra.release_free_memory.v1 callback does; `--thinc-step` runs the optimizer step as it
was before ElectraShim updated weights in place, to compare.

  OMP_NUM_THREADS=2 python benchmarks/train_memory.py configs/textcat.cfg OUT.csv \
      --paths.train corpus/sst2_train.spacy --paths.dev corpus/sst2_dev.spacy \
      --paths.checkpoint ../shared/models/all-MiniLM-L6-v2-electra --training.max_steps 500

Unknown --section.key value arguments are config overrides, as for `spacy train`. Writes OUT.csv
(one row per step) and OUT.json (the summary; see summarise()). Not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

from spacy_electra.memory import release_free_memory

CALLBACK = "spacy_electra_bench.train_memory.v1"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


try:
    _LIBC: Optional[ctypes.CDLL] = ctypes.CDLL("libc.so.6")
    _LIBC.mallinfo2.restype = _Mallinfo2
except (OSError, AttributeError):  # not glibc, or glibc < 2.33
    _LIBC = None

MB = 1024 * 1024


def proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def malloc_mb() -> Dict[str, float]:
    if _LIBC is None:
        return {"inuse_mb": float("nan"), "free_mb": float("nan")}
    info = _LIBC.mallinfo2()
    return {"inuse_mb": (info.uordblks + info.hblkhd) / MB, "free_mb": info.fordblks / MB}


def live_objects() -> Dict[str, Any]:
    import torch

    gc.collect()
    warnings.simplefilter("ignore", FutureWarning)  # isinstance() on torch.distributed.reduce_op warns
    objects = gc.get_objects()
    n_tensors = tensor_bytes = 0
    for obj in objects:
        try:
            if isinstance(obj, torch.Tensor):
                n_tensors += 1
                if not obj.is_sparse and obj.device.type == "cpu" and obj.untyped_storage() is not None:
                    tensor_bytes += obj.untyped_storage().nbytes()
        except Exception:  # noqa: BLE001 - some objects raise on isinstance/attribute access
            continue
    return {"gc_objects": len(objects), "tensors": n_tensors, "tensor_mb": tensor_bytes / MB,
            "types": Counter(type(o).__name__ for o in objects)}


class Probe:
    """The before_update callback, and the encoder input hooks it installs at its first call."""

    def __init__(self, deep_every: int, trim_every: int, out: Path) -> None:
        self.out = out
        self._writer: Any = None
        self.deep_every = deep_every
        self.trim_every = trim_every
        self.rows: List[Dict[str, Any]] = []
        self.hooked = 0
        self.start = time.perf_counter()
        self._reset()
        self.types_at: Dict[int, Counter] = {}

    def _reset(self) -> None:
        self.cur = {"pieces": 0, "rows": 0, "max_len": 0, "eval_pieces": 0}

    def _on_embeddings(self, module, args) -> None:
        import torch

        ids = args[0]
        rows, length = int(ids.shape[0]), int(ids.shape[1])
        if torch.is_grad_enabled():
            self.cur["pieces"] += rows * length
            self.cur["rows"] += rows
            self.cur["max_len"] = max(self.cur["max_len"], length)
        else:
            self.cur["eval_pieces"] += rows * length

    def _install(self, nlp) -> None:
        from spacy_electra.torch_model.blocks import ElectraEmbeddings

        seen = set()
        for _, pipe in nlp.pipeline:
            model = getattr(pipe, "model", None)
            if model is None:
                continue
            for node in model.walk():
                for shim in node.shims:
                    module = getattr(shim, "_model", None)
                    if module is None or not hasattr(module, "modules"):
                        continue
                    for sub in module.modules():
                        if isinstance(sub, ElectraEmbeddings) and id(sub) not in seen:
                            seen.add(id(sub))
                            sub.register_forward_pre_hook(self._on_embeddings)
        self.hooked = len(seen)

    def __call__(self, nlp, args: Dict[str, Any]) -> None:
        step = int(args["step"])
        if not self.rows and self.hooked == 0:
            self._install(nlp)
        if self.trim_every and step and step % self.trim_every == 0:
            release_free_memory()  # what spacy_electra.release_free_memory.v1 does
        row: Dict[str, Any] = {"step": step, "epoch": int(args["epoch"]),
                               "seconds": round(time.perf_counter() - self.start, 2),
                               "rss_mb": round(proc_status_mb("VmRSS"), 1), "hwm_mb": round(proc_status_mb("VmHWM"), 1)}
        row.update({k: round(v, 1) for k, v in malloc_mb().items()})
        # The update that ran before this call was step - 1.
        row.update(self.cur)
        prev_max = self.rows[-1]["max_pieces_so_far"] if self.rows else 0
        row["max_pieces_so_far"] = max(prev_max, row["pieces"])
        row["gc_objects"] = row["tensors"] = row["tensor_mb"] = ""
        if self.deep_every and step % self.deep_every == 0:
            live = live_objects()
            row.update({k: live[k] for k in ("gc_objects", "tensors")})
            row["tensor_mb"] = round(live["tensor_mb"], 1)
            self.types_at[step] = live["types"]
        self.rows.append(row)
        self._write(row)
        self._reset()

    def _write(self, row: Dict[str, Any]) -> None:
        """One CSV row per step as it comes, so an interrupted run keeps its series."""
        if self._writer is None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.out.open("w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()


def use_thinc_step() -> None:
    """ElectraShim.finish_update as it was before it updated the weights in place: thinc's
    PyTorchShim step, which rebinds every parameter to a tensor made from a view of the last."""
    from thinc.api import PyTorchShim

    from spacy_electra.layers.shim import ElectraShim, KeyScaledOptimizer

    def finish_update(self, optimizer) -> None:
        if self._model is None:
            return
        if self.layer_lr_decay != 1.0:
            optimizer = KeyScaledOptimizer(optimizer, lambda key: self.lr_scale(key[1]))
        PyTorchShim.finish_update(self, optimizer)

    ElectraShim.finish_update = finish_update  # type: ignore[method-assign]


def _slope_per_100(points: List[tuple]) -> Optional[float]:
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return round(100 * sum((x - mx) * (y - my) for x, y in points) / sxx, 2)


def summarise(rows: List[Dict[str, Any]], warmup: int, types_at: Dict[int, Counter]) -> Dict[str, Any]:
    """RSS (and malloc in-use) at the end of warm-up and at the end, their least-squares slopes in
    MB per 100 steps after warm-up, the last step at which a new largest batch arrived, and the
    slopes over the steps after it (a leak grows there too; a high-water mark does not)."""
    after = [r for r in rows if r["step"] >= warmup]
    at_warm = after[0] if after else rows[-1]
    last = rows[-1]
    new_max_steps = [r["step"] for i, r in enumerate(rows) if i and r["max_pieces_so_far"] > rows[i - 1]["max_pieces_so_far"]]
    last_new_max = max(new_max_steps) if new_max_steps else 0
    plateau = [r for r in after if r["step"] >= last_new_max]
    deep = [r for r in rows if r["gc_objects"] != ""]
    growth = None
    deep_after = [r for r in deep if r["step"] >= warmup]
    if len(deep_after) >= 2 and deep_after[0]["step"] in types_at and deep_after[-1]["step"] in types_at:
        a, b = types_at[deep_after[0]["step"]], types_at[deep_after[-1]["step"]]
        growth = {k: b[k] - a[k] for k in sorted(set(a) | set(b), key=lambda k: -(b[k] - a[k]))[:12] if b[k] != a[k]}
    return {
        "steps": last["step"],
        "warmup_step": at_warm["step"],
        "rss_warmup_mb": at_warm["rss_mb"],
        "rss_end_mb": last["rss_mb"],
        "rss_peak_mb": max(r["rss_mb"] for r in rows),
        "rss_slope_mb_per_100": _slope_per_100([(r["step"], r["rss_mb"]) for r in after]),
        "inuse_warmup_mb": at_warm["inuse_mb"],
        "inuse_end_mb": last["inuse_mb"],
        "inuse_slope_mb_per_100": _slope_per_100([(r["step"], r["inuse_mb"]) for r in after]),
        "free_end_mb": last["free_mb"],
        "max_pieces": max(r["pieces"] for r in rows),
        "max_len": max(r["max_len"] for r in rows),
        "max_eval_pieces": max(r["eval_pieces"] for r in rows),
        "last_new_max_pieces_step": last_new_max,
        "plateau_steps": len(plateau),
        "rss_slope_plateau_mb_per_100": _slope_per_100([(r["step"], r["rss_mb"]) for r in plateau]),
        "inuse_slope_plateau_mb_per_100": _slope_per_100([(r["step"], r["inuse_mb"]) for r in plateau]),
        "gc_objects": [(r["step"], r["gc_objects"]) for r in deep],
        "tensors": [(r["step"], r["tensors"], r["tensor_mb"]) for r in deep],
        "gc_type_growth_after_warmup": growth,
    }


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, nargs="?")
    parser.add_argument("out", type=Path, nargs="?", help="CSV of the per-step series; the summary goes beside it as .json")
    parser.add_argument("--from-csv", type=Path, help="only summarise the series of an earlier (or interrupted) run")
    parser.add_argument("--warmup", type=int, default=100, help="first step counted as after warm-up")
    parser.add_argument("--deep-every", type=int, default=50, help="count gc objects and torch tensors every N steps (0: never)")
    parser.add_argument("--thinc-step", action="store_true",
                        help="the optimizer step as before the fix (thinc's PyTorchShim.finish_update), to compare")
    parser.add_argument("--trim-every", type=int, default=0, help="call glibc malloc_trim(0) every N steps (0: never)")
    args, rest = parser.parse_known_args(argv)
    if args.from_csv:
        with args.from_csv.open() as f:
            rows = [{k: (v if v == "" else float(v) if "." in v else int(v)) for k, v in row.items()} for row in csv.DictReader(f)]
        print(json.dumps({"csv": str(args.from_csv), **summarise(rows, args.warmup, {})}))
        return
    if args.config is None or args.out is None:
        parser.error("config and out are needed to run")

    import spacy
    from spacy import util
    from spacy.cli._util import parse_config_overrides
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_nlp

    import spacy_electra  # noqa: F401 - registers the architectures

    if args.thinc_step:
        use_thinc_step()
    probe = Probe(args.deep_every, args.trim_every, args.out)
    spacy.registry.callbacks(CALLBACK, func=lambda: probe)
    overrides = parse_config_overrides(rest)
    config = util.load_config(args.config, overrides=overrides, interpolate=False)
    config["training"]["before_update"] = {"@callbacks": CALLBACK}
    nlp = init_nlp(config, use_gpu=-1)
    train_nlp(nlp, None, use_gpu=-1, stdout=sys.stderr, stderr=sys.stderr)

    rows = probe.rows
    summary = {"config": str(args.config), "overrides": overrides, "trim_every": args.trim_every, "thinc_step": args.thinc_step,
               "encoders_hooked": probe.hooked, **summarise(rows, args.warmup, probe.types_at)}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("gc_objects", "tensors", "gc_type_growth_after_warmup")}))


if __name__ == "__main__":
    main()
