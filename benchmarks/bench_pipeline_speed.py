"""Pipeline speed on CPU: ``electra_transformer`` + ``ner`` against spacy-transformers and spaCy's CNN.

Three pipelines annotate the same pre-tokenized CoNLL-2003 dev documents:

A  ours:               ``electra_transformer`` (window 128 / stride 96 *wordpieces*) + ``ner`` on
                       ``spacy_electra.ElectraListener.v1`` (pooling "first")
B  spacy-transformers: ``transformer`` (TransformerModel.v3, HF ``ElectraModel``, strided_spans
                       window 128 / stride 96 *spaCy tokens*) + ``ner`` on
                       ``spacy-transformers.TransformerListener.v1`` (reduce_mean)
C  spaCy CNN:          ``spacy init config -p ner -o efficiency`` (no vectors)

A and B load the same random ELECTRA-small-shaped checkpoint (built once: a WordPiece vocabulary
trained on the CoNLL-2003 train text, random weights), checked to hold identical weights. The
``ner`` heads are untrained (initialised on a few dev examples): speed, not accuracy.

Each repetition times ``list(nlp.pipe(batch))`` for every batch of ``--batch-size`` docs through A,
B and C in turn (rotating which goes first), on fresh ``Doc(nlp.vocab, words=...)`` objects
(tokenisation is outside the timing), with
``torch.set_num_threads(--threads)``. The machine is shared, so the report gives medians and the
ratios A/B and A/C (words/s; above 1.00 means ours is faster).

    .venv/bin/python benchmarks/bench_pipeline_speed.py --threads 2 --docs 216 --repeats 3

Skips (exit 0) when ../shared/data is absent. Not a test: numbers go into BENCHMARKS.md by hand.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import datetime
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

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
CONLL = DATA / "ner" / "conll2003"
LABELS = ("PER", "ORG", "LOC", "MISC")
ELECTRA_SMALL = dict(
    embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
    intermediate_size=1024, max_position_embeddings=512,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch (and BLAS) threads")
    p.add_argument("--docs", type=int, default=216, help="CoNLL-2003 dev documents to annotate (216 = all)")
    p.add_argument("--batch-size", type=int, default=32, help="nlp.pipe batch_size")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions of each pipeline")
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--stride", type=int, default=96)
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="where to build/cache the random checkpoint (default: a folder under the temp dir)")
    p.add_argument("--pipelines", default="ABC", help="which pipelines to time, e.g. AB")
    p.add_argument("--out-md", type=Path, default=REPO / "benchmarks" / "results" / "pipeline_speed.md",
                   help="markdown report ('-' to skip writing)")
    p.add_argument("--append", action="store_true", help="append to --out-md instead of overwriting")
    return p.parse_args(argv)


# -- data ----------------------------------------------------------------------------------------
def read_conll_documents(path: Path) -> List[List[str]]:
    """Token column of a CoNLL-2003 file, one list of words per -DOCSTART- document."""
    from spacy_electra.convert import conll_ner_to_docs

    return [[t.text for t in doc] for doc in conll_ner_to_docs(path)]


def build_checkpoint(directory: Path) -> Path:
    """Random ELECTRA-small-shaped discriminator with a CoNLL-trained uncased WordPiece vocab."""
    if (directory / "config.json").exists() and (directory / "vocab.txt").exists():
        return directory
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import ElectraConfig, ElectraForPreTraining

    directory.mkdir(parents=True, exist_ok=True)
    texts = [" ".join(words) for words in read_conll_documents(CONLL / "train.txt")]
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(texts, vocab_size=30522, min_frequency=1, show_progress=False,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.save_model(str(directory))
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": true}\n')
    vocab = (directory / "vocab.txt").read_text(encoding="utf8").splitlines()
    torch.manual_seed(0)
    config = ElectraConfig(vocab_size=len(vocab), **ELECTRA_SMALL)
    ElectraForPreTraining(config).save_pretrained(str(directory))
    return directory


# -- pipelines -----------------------------------------------------------------------------------
def init_examples(nlp, gold_docs):
    from spacy.tokens import Doc
    from spacy.training import Example

    examples = []
    for gold in gold_docs[:5]:
        words = [t.text for t in gold]
        pred = Doc(nlp.vocab, words=words)
        ents = [(e.start_char, e.end_char, e.label_) for e in gold.ents]
        examples.append(Example.from_dict(pred, {"words": words, "entities": ents}))
    return examples


def add_ner(nlp, tok2vec: Dict, gold_docs):
    ner = nlp.add_pipe("ner", config={"model": {"tok2vec": tok2vec}})
    for label in LABELS:
        ner.add_label(label)
    examples = init_examples(nlp, gold_docs)
    nlp.initialize(lambda: examples)
    return nlp


def pipeline_ours(checkpoint: Path, window: int, stride: int, gold_docs):
    import spacy
    import spacy_electra.pipes.transformer  # noqa: F401  (registers the factory)

    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer",
                 config={"model": {"encoder": {"checkpoint": str(checkpoint)}, "with_windows": {"window": window, "stride": stride}}})
    return add_ner(nlp, {"@architectures": "spacy_electra.ElectraListener.v1", "pooling": "first"}, gold_docs)


def pipeline_spacy_transformers(checkpoint: Path, window: int, stride: int, gold_docs):
    import spacy
    import spacy_transformers  # noqa: F401

    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3",
        "name": str(checkpoint),
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": window, "stride": stride},
        "tokenizer_config": {"use_fast": True},
    }})
    return add_ner(nlp, {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                         "pooling": {"@layers": "reduce_mean.v1"}}, gold_docs)


def pipeline_cnn(gold_docs):
    from spacy.cli.init_config import init_config
    from spacy.util import load_model_from_config

    config = init_config(lang="en", pipeline=["ner"], optimize="efficiency")
    nlp = load_model_from_config(config, auto_fill=True)
    ner = nlp.get_pipe("ner")
    for label in LABELS:
        ner.add_label(label)
    examples = init_examples(nlp, gold_docs)
    nlp.initialize(lambda: examples)
    return nlp


def check_same_weights(nlp_a, nlp_b, checkpoint: Path) -> str:
    """Every weight tensor of the HF model inside B has an identical tensor in A, and both match
    the checkpoint on disk (parameter names differ between the two implementations, so tensors
    are matched by shape and value)."""
    import torch
    from transformers import ElectraModel

    from spacy_electra.layers.torch_encoder import get_encoder

    ref = {k: v for k, v in ElectraModel.from_pretrained(str(checkpoint)).state_dict().items()
           if not k.endswith("position_ids") and not k.endswith("token_type_ids")}
    hf_b = None
    for node in nlp_b.get_pipe("transformer").model.walk():
        for shim in node.shims:
            if isinstance(getattr(shim, "_model", None), torch.nn.Module):
                hf_b = shim._model
    assert hf_b is not None, "could not find B's torch model"
    b_params = {k: v for k, v in hf_b.state_dict().items() if k in ref}
    assert set(b_params) == set(ref), "B's HF model lacks checkpoint weights"
    assert all(torch.equal(ref[k], b_params[k]) for k in ref), "B's weights differ from the checkpoint"
    ours = list(get_encoder(nlp_a.get_pipe("electra_transformer").model).encoder.state_dict().values())
    # A fuses query/key/value into one matrix per layer: compare against the concatenation.
    for key in [k for k in ref if ".attention.self.query." in k]:
        parts = [ref.pop(key.replace("query", name)) for name in ("query", "key", "value")]
        ref[key.replace("query", "qkv")] = torch.cat(parts, dim=0)
    unmatched = [k for k, v in ref.items()
                 if not any(o.shape == v.shape and torch.equal(o, v) for o in ours)]
    # Weights A may legitimately not hold (not used by the encoder forward).
    unmatched = [k for k in unmatched if "token_type" not in k]
    assert not unmatched, f"A lacks checkpoint weights: {unmatched[:5]}"
    n = sum(v.numel() for v in ref.values())
    return f"identical ({len(ref)} tensors, q/k/v fused, {n / 1e6:.1f}M parameters, checked against {checkpoint.name}/)"


# -- measurement ---------------------------------------------------------------------------------
def timed_pipe(nlp, words: List[List[str]], batch_size: int) -> float:
    from spacy.tokens import Doc

    docs = [Doc(nlp.vocab, words=w) for w in words]
    start = time.perf_counter()
    out = list(nlp.pipe(docs, batch_size=batch_size))
    elapsed = time.perf_counter() - start
    assert len(out) == len(docs)
    return elapsed


def interleaved_seconds(pipelines, keys: List[str], words: List[List[str]], batch_size: int, repeats: int) -> Dict[str, List[float]]:
    """Seconds per repeat for each pipeline, interleaved at batch granularity: every batch of
    ``batch_size`` docs goes through every pipeline in turn (rotating which goes first), so load
    changes on a shared machine hit all alike. Each nlp.pipe call is exactly one batch, i.e. the
    same work as one call over all docs."""
    n_words = sum(len(w) for w in words)
    batches = [words[i : i + batch_size] for i in range(0, len(words), batch_size)]
    times: Dict[str, List[float]] = {k: [] for k in keys}
    turn = 0
    for r in range(repeats):
        elapsed = {k: 0.0 for k in keys}
        for batch in batches:
            order = keys[turn % len(keys):] + keys[: turn % len(keys)]
            turn += 1
            for k in order:
                elapsed[k] += timed_pipe(pipelines[k], batch, batch_size)
        for k in keys:
            times[k].append(elapsed[k])
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {n_words / times[k][-1]:,.0f} words/s" for k in keys), flush=True)
    return times


def window_stats(nlp_a, nlp_b, words: List[List[str]], window: int, stride: int, batch_size: int) -> Dict[str, float]:
    """Windows and real (unpadded) pieces that A and B feed the transformer for these docs."""
    from spacy.tokens import Doc

    from spacy_electra.layers.torch_encoder import get_encoder
    from spacy_electra.windows import window_starts

    wp = get_encoder(nlp_a.get_pipe("electra_transformer").model).wordpiece
    pieces = wp.encode_batch(words)
    n_tokens = sum(len(w) for w in words)
    n_pieces = sum(len(p.ids) for p in pieces)
    a_windows = [min(window, len(p.ids) - s) + 2 for p in pieces for s in window_starts(len(p.ids), window, stride)]
    b_windows: List[int] = []
    for doc in nlp_b.pipe([Doc(nlp_b.vocab, words=w) for w in words], batch_size=batch_size):
        wpb = doc._.trf_data.wordpieces
        b_windows.extend(int(n) for n in wpb.lengths)
    return {
        "pieces_per_token": n_pieces / n_tokens,
        "a_windows": len(a_windows), "a_window_pieces": sum(a_windows), "a_mean_len": statistics.mean(a_windows),
        "b_windows": len(b_windows), "b_window_pieces": sum(b_windows), "b_mean_len": statistics.mean(b_windows),
    }


def write_json(path: Optional[Path], result: Dict) -> None:
    """Write a benchmark's result to ``path`` (its folder made as needed); nothing without one."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
    print(f"wrote {path}")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), "?")
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor() or "?"
    return f"{model}, {os.cpu_count()} cores visible"


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not (CONLL / "valid.txt").exists() or not (CONLL / "train.txt").exists():
        print(f"skip: CoNLL-2003 data not found under {CONLL}")
        return 0
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    warnings.filterwarnings("ignore")
    import spacy
    import spacy_transformers
    import torch
    import transformers
    from spacy_electra.convert import conll_ner_to_docs

    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint_dir or Path(tempfile.gettempdir()) / "spacy_electra_bench" / "electra-small-random-conll"
    t0 = time.perf_counter()
    build_checkpoint(checkpoint)
    print(f"checkpoint: {checkpoint} ({time.perf_counter() - t0:.1f}s)", flush=True)

    gold_docs = conll_ner_to_docs(CONLL / "valid.txt")[: args.docs]
    words = [[t.text for t in doc] for doc in gold_docs]
    n_words = sum(1 for doc in gold_docs for t in doc if not t.is_space)

    builders = {
        "A": ("A: electra_transformer + ner (ours)", lambda: pipeline_ours(checkpoint, args.window, args.stride, gold_docs)),
        "B": ("B: spacy-transformers transformer + ner", lambda: pipeline_spacy_transformers(checkpoint, args.window, args.stride, gold_docs)),
        "C": ("C: spaCy CNN ner (efficiency)", lambda: pipeline_cnn(gold_docs)),
    }
    keys = [k for k in "ABC" if k in args.pipelines.upper()]
    pipelines = {k: builders[k][1]() for k in keys}
    print("pipelines: " + ", ".join(f"{k}={pipelines[k].pipe_names}" for k in keys), flush=True)
    weights = check_same_weights(pipelines["A"], pipelines["B"], checkpoint) if {"A", "B"} <= set(keys) else "n/a"
    print(f"weights A vs B: {weights}", flush=True)
    stats = window_stats(pipelines["A"], pipelines["B"], words, args.window, args.stride, args.batch_size) if {"A", "B"} <= set(keys) else {}

    # warm-up (allocator, lazy init) on a few docs
    for k in keys:
        timed_pipe(pipelines[k], words[:8], args.batch_size)
    times = interleaved_seconds(pipelines, keys, words, args.batch_size, args.repeats)
    wps = {k: n_words / statistics.median(times[k]) for k in keys}
    per_repeat = {k: [n_words / t for t in times[k]] for k in keys}
    lines = [
        f"## Pipeline speed, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{' '.join(['.venv/bin/python', 'benchmarks/bench_pipeline_speed.py'] + (sys.argv[1:] if argv is None else argv))}`",
        f"- machine: {machine()}; torch threads {args.threads} (shared machine: medians over interleaved repeats)",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}, spacy {spacy.__version__}, "
        f"spacy-transformers {importlib.metadata.version('spacy-transformers')}, transformers {transformers.__version__}",
        f"- data: CoNLL-2003 dev, {len(words)} documents, {n_words:,} words; pre-tokenized Docs, batch_size {args.batch_size}, "
        f"{args.repeats} repeats, A/B/C interleaved batch by batch",
        f"- weights: random ELECTRA-small shape (vocab {_vocab_size(checkpoint):,} pieces), A vs B {weights}",
        "",
        "| pipeline | words/s (median) | per repeat | seconds (median) |",
        "| --- | ---: | --- | ---: |",
    ]
    for k in keys:
        lines.append(f"| {builders[k][0]} | {wps[k]:,.0f} | {', '.join(f'{x:,.0f}' for x in per_repeat[k])} | "
                     f"{statistics.median(times[k]):.2f} |")
    lines.append("")
    if "A" in keys and "B" in keys:
        per = [b / a for a, b in zip(times["A"], times["B"])]
        lines.append(f"- **A/B = {wps['A'] / wps['B']:.2f}** (words/s ratio of medians; per repeat "
                     f"{', '.join(f'{x:.2f}' for x in per)}): above 1 means ours is faster")
    if "A" in keys and "C" in keys:
        lines.append(f"- A/C = {wps['A'] / wps['C']:.3f} (ours relative to spaCy's CNN ner)")
    if stats:
        lines.append(
            f"- windows: A counts {args.window} *wordpieces* per window, B {args.window} *spaCy tokens* per window; "
            f"CoNLL dev has {stats['pieces_per_token']:.2f} pieces per token. On these docs A runs "
            f"{stats['a_windows']} windows ({stats['a_window_pieces']:,} pieces incl. [CLS]/[SEP], mean {stats['a_mean_len']:.0f}), "
            f"B runs {stats['b_windows']} windows ({stats['b_window_pieces']:,} pieces, mean {stats['b_mean_len']:.0f}), "
            "before padding."
        )
    lines.append("- ner heads are untrained (speed only); A pools the first piece of each token, B reduce_mean.")
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    if str(args.out_md) != "-":
        args.out_md.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out_md, "a" if args.append else "w", encoding="utf8") as f:
            f.write(("\n" if args.append else "") + report)
        print(f"wrote {args.out_md}")
    return 0


def _vocab_size(checkpoint: Path) -> int:
    return len((checkpoint / "vocab.txt").read_text(encoding="utf8").splitlines())


if __name__ == "__main__":
    sys.exit(main())
