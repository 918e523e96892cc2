"""CPU inference benchmark (issue #13): every spacy-electra backend against spacy-transformers and
spaCy's CNN ``ner``, in one interleaved run on the same documents and the same weights.

    PYTHONPATH=. .venv/bin/python benchmarks/run.py --output benchmarks/results/inference.json

What it measures (all pipelines are the ones of ``bench_pipeline_speed.py``; ELECTRA-small shape,
random weights, one checkpoint folder that both ELECTRA implementations load, checked identical):

1. words/s of ``electra_transformer`` + ``ner`` in each inference kind (fp32, bf16, int8, onnx,
   onnx-int8), of spacy-transformers (``transformer`` with HF ``ElectraModel`` + ``ner`` on its
   listener) and of spaCy's CNN ``ner`` (efficiency), on ``--docs`` CoNLL-2003 dev documents.
   Every batch of ``--batch-size`` docs goes through every pipeline in turn (rotating which goes
   first) and repeats are medians, so load changes on a shared machine hit all pipelines alike.
2. peak RSS annotating one 50,000-word document, each pipeline in a fresh subprocess (so the
   maximum RSS of that process is the pipeline's alone), for ``--rss`` pipelines;
3. seconds per word for one document of 100, 1,000, 10,000 and 100,000 words (CoNLL dev text
   repeated), for ``--scaling`` pipelines: flat means no super-linear stage.
4. (``--layouts``) the window layout: pieces and padded positions encoded and seconds of the
   fp32 encoder's forward passes over the same documents, windows on the stride's grid packed
   by cost (the package's), on the grid packed by filling each forward pass to the budget, and
   the earlier layout (last window shifted back to a full ``--window``, filled packing),
   interleaved repeat by repeat.

It prints a table and the ratios and writes everything as JSON to ``--output``. Skips (exit 0)
when ../shared/data is absent. The inference kinds apply to inference only, so the ner heads are
untrained (speed, not accuracy: ``benchmarks/inference_accuracy.py`` measures accuracy).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_pipeline_speed as bps  # noqa: E402  (the pipelines and the checkpoint)

KINDS = ("fp32", "bf16", "int8", "onnx", "onnx-int8")
OTHERS = ("spacy-transformers", "spacy-cnn")
SCALING_WORDS = (100, 1_000, 10_000, 100_000)
RSS_WORDS = 50_000


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", type=Path, default=None, help="JSON file to write")
    p.add_argument("--threads", type=int, default=2, help="torch, BLAS and ONNX Runtime threads")
    p.add_argument("--docs", type=int, default=80, help="CoNLL-2003 dev documents to annotate (216 = all)")
    p.add_argument("--batch-size", type=int, default=16, help="nlp.pipe batch_size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--stride", type=int, default=96)
    p.add_argument("--kinds", default=",".join(KINDS), help="spacy-electra inference kinds to time")
    p.add_argument("--others", default=",".join(OTHERS), help="reference pipelines to time")
    p.add_argument("--scaling", default="fp32,onnx-int8", help="pipelines for the time-per-word test ('' to skip)")
    p.add_argument("--scaling-words", default=",".join(map(str, SCALING_WORDS)))
    p.add_argument("--rss", default="fp32,onnx-int8,spacy-cnn", help="pipelines for the peak-RSS test ('' to skip)")
    p.add_argument("--rss-words", type=int, default=RSS_WORDS)
    p.add_argument("--checkpoint-dir", type=Path, default=None)
    p.add_argument("--layouts", action="store_true", help="compare the window layouts (item 4 above)")
    p.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)  # internal: one RSS measurement
    return p.parse_args(argv)


def build(name: str, checkpoint: Path, args, gold_docs):
    """A pipeline by name: an inference kind of ours, or one of OTHERS."""
    import spacy

    spacy.util.fix_random_seed(0)
    if name == "spacy-transformers":
        return bps.pipeline_spacy_transformers(checkpoint, args.window, args.stride, gold_docs)
    if name == "spacy-cnn":
        return bps.pipeline_cnn(gold_docs)
    from spacy_electra.inference import set_inference

    nlp = bps.pipeline_ours(checkpoint, args.window, args.stride, gold_docs)
    effective = set_inference(nlp, name)["electra_transformer"]
    if effective != name:
        raise SystemExit(f"inference {name!r} fell back to {effective!r} here; drop it from --kinds")
    return nlp


def long_doc_words(words: List[List[str]], n: int) -> List[str]:
    """The first ``n`` words of the dev documents, repeated as needed: one document."""
    flat = [w for doc in words for w in doc]
    return (flat * (n // len(flat) + 1))[:n]


def rss_child(args) -> int:
    """Run in a fresh process: build one pipeline, annotate one long document, print JSON."""
    import torch

    torch.set_num_threads(args.threads)
    checkpoint = _checkpoint(args)
    gold_docs = _gold(args)
    nlp = build(args.rss_child, checkpoint, args, gold_docs)
    from spacy.tokens import Doc

    doc = Doc(nlp.vocab, words=long_doc_words([[t.text for t in d] for d in gold_docs], args.rss_words))
    before = _peak_rss_mb()
    start = time.perf_counter()
    nlp(doc)
    seconds = time.perf_counter() - start
    peak = _peak_rss_mb()
    print(json.dumps({"peak_rss_mb": round(peak, 1), "loaded_rss_mb": round(before, 1),
                      "annotate_delta_mb": round(peak - before, 1), "seconds": round(seconds, 2)}))
    return 0


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM): unlike getrusage's ru_maxrss, which a child inherits
    from the parent that forked it, VmHWM starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure_rss(name: str, args) -> Dict[str, float]:
    cmd = [sys.executable, __file__, "--rss-child", name, "--threads", str(args.threads), "--rss-words", str(args.rss_words),
           "--window", str(args.window), "--stride", str(args.stride), "--checkpoint-dir", str(_checkpoint(args))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"RSS run of {name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def seconds_per_word(nlp, words: List[str], repeats: int = 2) -> float:
    from spacy.tokens import Doc

    best = float("inf")
    for _ in range(repeats if len(words) <= 10_000 else 1):
        doc = Doc(nlp.vocab, words=words)
        start = time.perf_counter()
        nlp(doc)
        best = min(best, time.perf_counter() - start)
    return best / len(words)


def _checkpoint(args) -> Path:
    return args.checkpoint_dir or Path(tempfile.gettempdir()) / "spacy_electra_bench" / "electra-small-random-conll"


def _gold(args):
    from spacy_electra.convert import conll_ner_to_docs

    return conll_ner_to_docs(bps.CONLL / "valid.txt")


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not (bps.CONLL / "valid.txt").exists() or not (bps.CONLL / "train.txt").exists():
        print(f"skip: CoNLL-2003 data not found under {bps.CONLL}")
        return 0
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    warnings.filterwarnings("ignore")
    if args.rss_child:
        return rss_child(args)
    import spacy
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    checkpoint = bps.build_checkpoint(_checkpoint(args))
    gold_all = _gold(args)
    gold_docs = gold_all[: args.docs]
    words = [[t.text for t in doc] for doc in gold_docs]
    n_words = sum(len(w) for w in words)
    names = [k for k in args.kinds.split(",") if k] + [o for o in args.others.split(",") if o]
    pipelines = {name: build(name, checkpoint, args, gold_all) for name in names}
    weights = "n/a"
    if "fp32" in pipelines and "spacy-transformers" in pipelines:
        weights = bps.check_same_weights(pipelines["fp32"], pipelines["spacy-transformers"], checkpoint)
    print(f"pipelines built ({time.perf_counter() - started:.0f}s); weights ours vs spacy-transformers: {weights}", flush=True)

    for name in names:  # warm-up: lazy builds (int8 copy, ONNX export) happen here, untimed
        bps.timed_pipe(pipelines[name], words[:4], args.batch_size)
    times = bps.interleaved_seconds(pipelines, names, words, args.batch_size, args.repeats)
    wps = {k: n_words / statistics.median(times[k]) for k in names}

    scaling: Dict[str, Dict[str, float]] = {}
    sizes = [int(n) for n in args.scaling_words.split(",") if n]
    all_words = [[t.text for t in d] for d in gold_all]
    for name in [k for k in args.scaling.split(",") if k]:
        nlp = pipelines.get(name) or build(name, checkpoint, args, gold_all)
        scaling[name] = {str(n): seconds_per_word(nlp, long_doc_words(all_words, n)) for n in sizes}
        print(f"seconds/word {name}: " + ", ".join(f"{n:,}: {scaling[name][str(n)] * 1e6:.0f} us" for n in sizes), flush=True)
    layouts = layout_comparison(pipelines.get("fp32") or build("fp32", checkpoint, args, gold_all), words, args) if args.layouts else {}
    rss = {}
    for name in [k for k in args.rss.split(",") if k]:
        rss[name] = measure_rss(name, args)
        print(f"peak RSS {name} ({args.rss_words:,}-word doc): {rss[name]}", flush=True)

    result = {
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "command": " ".join([Path(sys.executable).name, "benchmarks/run.py"] + (sys.argv[1:] if argv is None else argv)),
        "machine": bps.machine(),
        "load_average_at_end": os.getloadavg(),
        "threads": args.threads,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "spacy": spacy.__version__,
                     "spacy-transformers": importlib.metadata.version("spacy-transformers"),
                     "transformers": transformers.__version__, "onnxruntime": _version("onnxruntime")},
        "data": {"docs": len(words), "words": n_words, "batch_size": args.batch_size, "repeats": args.repeats},
        "weights": weights,
        "words_per_second": {k: round(wps[k], 1) for k in names},
        "words_per_second_per_repeat": {k: [round(n_words / t, 1) for t in times[k]] for k in names},
        "ratios": _ratios(wps),
        "seconds_per_word": scaling,
        "peak_rss": rss,
        "window_layouts": layouts,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print()
    print(report(result))
    bps.write_json(args.output, result)
    return 0


def shifted_starts(n: int, window: int, stride: int) -> List[int]:
    """The earlier layout, kept here only to measure against: the last window shifted back so
    that it holds a full ``window`` pieces."""
    if n == 0:
        return []
    if n <= window:
        return [0]
    return list(range(0, n - window, stride)) + [n - window]


def filled_groups(lengths, max_batch_items: int) -> List[List[int]]:
    """The earlier packing, kept here only to measure against: sorted rows, each group filled up
    to the budget."""
    order, groups = sorted(range(len(lengths)), key=lambda i: lengths[i]), []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[i] <= max_batch_items:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def layout_comparison(nlp, words: List[List[str]], args) -> Dict[str, Dict[str, float]]:
    """Pieces and padded positions encoded, and median seconds of the encoder's forward passes,
    for each window layout over the same docs and batches."""
    from unittest import mock

    import torch

    import spacy_electra.windows as windows
    from spacy_electra.layers.torch_encoder import get_encoder, window_args

    encoder = get_encoder(nlp.get_pipe("electra_transformer").model)
    wp = encoder.wordpiece
    pieces = wp.encode_batch(words)
    layouts = {  # name: (window starts, packing)
        "grid, cost-packed (now)": (windows.window_starts, windows.pack_by_length),
        "grid, filled": (windows.window_starts, filled_groups),
        "shifted, filled (before)": (shifted_starts, filled_groups),
    }
    batches = {}
    for name, (starts, packing) in layouts.items():
        with mock.patch.object(windows, "window_starts", starts), mock.patch.object(windows, "pack_by_length", packing):
            batches[name] = [
                windows.make_window_batch(pieces[i : i + args.batch_size], window=args.window, stride=args.stride,
                                          max_batch_items=4096, cls_id=wp.cls_id, sep_id=wp.sep_id, pad_id=wp.pad_id)
                for i in range(0, len(pieces), args.batch_size)
            ]
    seconds: Dict[str, List[float]] = {name: [] for name in layouts}
    names = list(layouts)
    with torch.no_grad():
        for rep in range(args.repeats + 1):  # the first round warms up, untimed
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                start = time.perf_counter()
                for batch in batches[name]:
                    encoder(*window_args(batch, torch.device("cpu")))
                if rep:
                    seconds[name].append(time.perf_counter() - start)
    out = {}
    for name in names:
        chunks = [c for b in batches[name] for c in b.chunks]
        out[name] = {
            "windows": sum(sum(b.doc_windows) for b in batches[name]),
            "window_pieces": int(sum(int(c.mask.sum()) - 2 * len(c.ids) for c in chunks)),
            "padded_positions": int(sum(c.ids.size for c in chunks)),
            "unpadded_chunks": sum(bool(c.mask.all()) for c in chunks),
            "chunks": len(chunks),
            "seconds": round(statistics.median(seconds[name]), 3),
        }
    out["pieces"] = {"n": sum(len(p.ids) for p in pieces)}
    print("window layouts: " + json.dumps(out), flush=True)
    return out


def _ratios(wps: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """words/s of each of our kinds over each reference and over our fp32."""
    out = {}
    for k in [k for k in wps if k in KINDS]:
        out[k] = {f"vs {ref}": round(wps[k] / wps[ref], 3) for ref in ("spacy-transformers", "spacy-cnn", "fp32")
                  if ref in wps and ref != k}
    return out


def report(result) -> str:
    lines = ["| pipeline | words/s (median) | per repeat | vs spacy-transformers | vs fp32 |", "| --- | ---: | --- | ---: | ---: |"]
    wps = result["words_per_second"]
    for k, v in wps.items():
        ratios = result["ratios"].get(k, {})
        st = ratios.get("vs spacy-transformers")
        if st is None and "spacy-transformers" in wps:
            st = round(v / wps["spacy-transformers"], 3)
        label = f"spacy-electra {k}" if k in KINDS else k
        per_repeat = ", ".join(f"{x:,.0f}" for x in result["words_per_second_per_repeat"][k])
        vs_st = "" if st is None else f"{st:.2f}x"
        vs_fp32 = f"{ratios['vs fp32']:.2f}x" if "vs fp32" in ratios else ""
        lines.append(f"| {label} | {v:,.0f} | {per_repeat} | {vs_st} | {vs_fp32} |")
    for name, per in result["seconds_per_word"].items():
        lines.append(f"- us/word {name}: " + ", ".join(f"{n} words {s * 1e6:.0f}" for n, s in per.items()))
    for name, r in result["peak_rss"].items():
        lines.append(f"- peak RSS {name}: {r['peak_rss_mb']:,.0f} MB ({r['annotate_delta_mb']:,.0f} MB above the loaded pipeline, {r['seconds']} s)")
    lines.append(f"- {result['data']['docs']} docs, {result['data']['words']:,} words; threads {result['threads']}; "
                 f"load average at the end {', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}; {result['total_seconds']:.0f} s in all")
    return "\n".join(lines)


def _version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
