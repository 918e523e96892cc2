"""GPU check of ``spacy-electra annotate --gpu-id`` (issue #16), end to end on one CUDA GPU.

    python benchmarks/gpu_annotate.py --out OUT_DIR

1. the test suite's small trained pipeline (``tests/test_annotate.build_pipeline``: tagger, ner
   and textcat on a shared encoder) annotates a synthetic JSONL corpus (with rejects) through the
   CLI, once with ``--gpu-id -1`` and once with ``--gpu-id 0``; counts, rejects and records are
   compared (float results differ in the last bits between devices, so records may differ where
   scores nearly tie: the number that differ is reported, not hidden);
2. ``load_pipeline(..., gpu_id=0)`` puts the encoder's weights on the GPU, and ``--inference int8``
   with ``--gpu-id 0`` keeps the torch path with one warning;
3. words/s of ``electra_transformer`` + ``electra_ner`` at ELECTRA-small shape (random weights),
   CPU (all cores) vs GPU, same corpus.

Writes ``gpu_annotate.json`` to ``--out``. Needs a CUDA GPU and cupy (thinc's GPU ops).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def repo_env() -> dict:
    """This process's environment with this checkout first on PYTHONPATH (for the subprocesses)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spacy_electra", *args], capture_output=True, text=True, env=repo_env())


def records(folder: Path):
    return [line for p in sorted(folder.glob("records-*.jsonl")) for line in p.read_text().splitlines()]


def same_labels(a: dict, b: dict, tolerance: float = 1e-4) -> bool:
    """Same entities, tags and text; category scores within ``tolerance`` (devices differ in the
    last bits of a float)."""
    cats_a, cats_b = a.pop("cats", {}) or {}, b.pop("cats", {}) or {}
    close = cats_a.keys() == cats_b.keys() and all(abs(cats_a[k] - cats_b[k]) <= tolerance for k in cats_a)
    return close and a == b


def write_corpus(path: Path, n: int, words_per_doc: int, seed: int) -> int:
    from tests.test_annotate import WORDS

    rng = random.Random(seed)
    lines = []
    for i in range(n):
        lines.append(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(words_per_doc // 2, words_per_doc))), "i": i}))
    lines[3] = "{not json"
    lines[7] = json.dumps({"no_text": 1})
    path.write_text("\n".join(lines) + "\n")
    return n


def run(pipeline: Path, corpus: Path, out: Path, gpu: int, *extra: str) -> dict:
    start = time.perf_counter()
    done = cli("annotate", str(pipeline), str(corpus), str(out), "--gpu-id", str(gpu), "--batch-size", "64", *extra)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"annotate --gpu-id {gpu} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {"seconds": round(seconds, 2), "totals": manifest["totals"], "last_line": done.stdout.strip().splitlines()[-1],
            "stderr_tail": done.stderr.strip().splitlines()[-3:]}


TIMED = """
import json, sys, time, torch
from spacy_electra.annotate import annotate
from spacy_electra.annotate.runner import load_pipeline
pipeline, corpus, out, gpu = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
nlp = load_pipeline(pipeline, gpu)
list(nlp.pipe(["warm up the encoder and the heads"] * 8))
start = time.perf_counter()
summary = annotate(pipeline, corpus, out, nlp=nlp, gpu_id=gpu, batch_size=int(sys.argv[5]), progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": round(seconds, 2), "words": summary.n_words, "words_per_s": round(summary.n_words / seconds, 1),
                  "torch_threads": torch.get_num_threads(), "batch_size": int(sys.argv[5])}))
"""


def timed(pipeline: Path, corpus: Path, out: Path, gpu: int, batch_size: int) -> dict:
    """annotate() with the pipeline already loaded: words/s without process start-up."""
    done = subprocess.run([sys.executable, "-c", TIMED, str(pipeline), str(corpus), str(out), str(gpu), str(batch_size)],
                          capture_output=True, text=True, env=repo_env())
    if done.returncode != 0:
        raise SystemExit(f"timed annotate --gpu-id {gpu} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--docs", type=int, default=3000)
    p.add_argument("--dry", action="store_true", help="rehearse on the CPU: 'GPU' runs use --gpu-id -1")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    result = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "dry": args.dry}
    GPU = -1 if args.dry else 0
    if not args.dry:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU here")
        result["gpu"] = torch.cuda.get_device_name(0)
        import cupy

        result["cupy"] = cupy.__version__
    work = Path(tempfile.mkdtemp(prefix="gpu-annotate-"))
    from tests.test_annotate import build_pipeline

    # 1. the small trained pipeline, CPU vs GPU, through the CLI
    small = build_pipeline(work / "small")
    corpus = work / "corpus.jsonl"
    write_corpus(corpus, args.docs, 12, seed=0)
    runs = {name: run(small, corpus, work / f"small_{name}", gpu) for name, gpu in (("cpu", -1), ("gpu", GPU))}
    cpu_records, gpu_records = records(work / "small_cpu"), records(work / "small_gpu")
    differ = [json.loads(a)["id"] for a, b in zip(cpu_records, gpu_records) if a != b]
    labels_differ = [json.loads(a)["id"] for a, b in zip(cpu_records, gpu_records) if not same_labels(json.loads(a), json.loads(b))]
    result["small_pipeline"] = {
        "cpu": runs["cpu"], "gpu": runs["gpu"], "records": [len(cpu_records), len(gpu_records)],
        "rejects_identical": (work / "small_cpu" / "rejects.jsonl").read_bytes() == (work / "small_gpu" / "rejects.jsonl").read_bytes(),
        "records_differing": len(differ), "first_differing": differ[:5],
        "records_differing_beyond_float_tolerance": len(labels_differ), "first_beyond": labels_differ[:5],
        "example_beyond": [cpu_records[i] + " || " + gpu_records[i] for i, line in enumerate(cpu_records)
                           if json.loads(line)["id"] in labels_differ[:2]],
    }
    print(json.dumps(result["small_pipeline"], indent=1), flush=True)

    # 2. the weights really are on the GPU; a CPU backend on a GPU keeps the torch path
    check = (
        "import warnings, json, sys\n"
        "from spacy_electra.annotate.runner import load_pipeline\n"
        "from spacy_electra.inference import find_encoders\n"
        f"nlp = load_pipeline({str(small)!r}, {GPU})\n"
        "devices = sorted({str(p.device) for _, module in find_encoders(nlp) for p in module.parameters()})\n"
        "doc = nlp('he moved to paris and london')\n"
        "print(json.dumps({'devices': devices, 'ents': [(e.text, e.label_) for e in doc.ents]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=repo_env())
    result["weights_on"] = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr[-2000:]
    result["int8_on_gpu"] = run(small, corpus, work / "small_int8", GPU, "--inference", "int8")
    print(result["weights_on"], result["int8_on_gpu"]["stderr_tail"], flush=True)

    # 3. ELECTRA-small shape: CPU (all cores) vs GPU words/s
    import spacy

    from tests.conftest import make_hf_checkpoint

    make_hf_checkpoint(work / "small-shape-ckpt", "ElectraForPreTraining", random_all=False, embedding_size=128,
                       hidden_size=256, num_hidden_layers=12, num_attention_heads=4, intermediate_size=1024)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": {"encoder": {"checkpoint": str(work / "small-shape-ckpt")}}})
    listener = {"@architectures": "spacy_electra.ElectraTransformerListener.v1", "upstream": "electra_transformer"}
    ner = nlp.add_pipe("electra_ner", config={"model": {"tok2vec": listener}})
    for label in ("PER", "ORG", "LOC", "MISC"):
        ner.add_label(label)
    nlp.initialize()
    nlp.to_disk(work / "electra-small-shape")
    big = work / "corpus-long.jsonl"
    write_corpus(big, 60 if args.dry else 1500, 200, seed=1)
    speed = {}
    for name, gpu in (("cpu", -1), ("gpu", GPU)):
        r = run(work / "electra-small-shape", big, work / f"shape_{name}", gpu)
        speed[name] = r
        print(name, r["last_line"], r["seconds"], flush=True)
    for name, gpu, batch in (("cpu", -1, 64), ("gpu", GPU, 64), ("gpu_batch256", GPU, 256)):
        speed[f"timed_{name}"] = timed(work / "electra-small-shape", big, work / f"timed_{name}", gpu, batch)
        print(name, speed[f"timed_{name}"], flush=True)
    words = speed["gpu"]["totals"].get("n_words")
    result["electra_small_shape"] = {
        "words": words, "timed": {k[6:]: v for k, v in speed.items() if k.startswith("timed_")},
        "cpu_words_per_s": round(words / speed["cpu"]["seconds"], 1), "gpu_words_per_s": round(words / speed["gpu"]["seconds"], 1),
        "note": "seconds include process start-up and loading the pipeline", "cpu": speed["cpu"], "gpu": speed["gpu"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_annotate.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("small_pipeline",)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
