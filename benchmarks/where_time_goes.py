"""Where a pipeline's time goes (issue #13): the torch encoder module vs everything else, per
pipeline of ``benchmarks/run.py``, on the same CoNLL-2003 dev documents.

    PYTHONPATH=. .venv/bin/python benchmarks/where_time_goes.py --threads 2 --kinds fp32,int8,spacy-transformers [--ops]

Times the whole ``nlp.pipe`` and, with forward hooks, the torch module under the transformer
component (our ``WindowedEncoder``, HF's ``ElectraModel``); ``--ops`` adds torch profiler's
operator table. One run each: repeat it, or use ``run.py`` for ratios.

With ``--pipeline PATH --dev DEV.spacy`` it profiles a saved pipeline instead (a teacher or a
distilled student, each of ``--kinds`` an inference kind) on DEV's docs, and splits the rest by
component (the encoder's time is inside the component that runs it):

    PYTHONPATH=. .venv/bin/python benchmarks/where_time_goes.py --threads 1 --kinds fp32,int8 \
        --pipeline training/students/ner2/model-best --dev corpus/conll_dev.spacy
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs", type=int, default=64)
    p.add_argument("--kinds", default="fp32,int8,spacy-transformers")
    p.add_argument("--ops", action="store_true", help="print torch profiler's operator table too")
    p.add_argument("--pipeline", type=Path, default=None, help="a saved pipeline to profile instead")
    p.add_argument("--dev", type=Path, default=None, help="with --pipeline: .spacy docs to run it on")
    args = p.parse_args()
    if args.pipeline is not None:
        if args.dev is None:
            p.error("--pipeline needs --dev: the .spacy docs to run it on")
        return saved_pipeline(args)
    warnings.filterwarnings("ignore")
    import torch
    from spacy.tokens import Doc

    import run

    torch.set_num_threads(args.threads)
    bench_args = run.parse_args(["--threads", str(args.threads), "--docs", str(args.docs)])
    checkpoint, gold = run._checkpoint(bench_args), run._gold(bench_args)
    words = [[t.text for t in doc] for doc in gold[: args.docs]]
    for name in args.kinds.split(","):
        nlp = run.build(name, checkpoint, bench_args, gold)
        component = nlp.get_pipe("transformer" if "transformer" in nlp.pipe_names else "electra_transformer")
        module = next(node for node in component.model.walk() if getattr(node, "shims", None)).shims[0].module
        spent = [0.0]
        module.register_forward_pre_hook(lambda *_: spent.__setitem__(0, spent[0] - time.perf_counter()))
        module.register_forward_hook(lambda *_: spent.__setitem__(0, spent[0] + time.perf_counter()))
        list(nlp.pipe([Doc(nlp.vocab, words=w) for w in words[:16]], batch_size=16))  # warm-up, lazy builds
        spent[0] = 0.0
        start = time.perf_counter()
        if args.ops:
            from torch.profiler import profile

            with profile() as prof:
                list(nlp.pipe([Doc(nlp.vocab, words=w) for w in words], batch_size=16))
        else:
            list(nlp.pipe([Doc(nlp.vocab, words=w) for w in words], batch_size=16))
        total = time.perf_counter() - start
        print(f"{name}: {total:.2f} s in all, {type(module).__name__} {spent[0]:.2f} s ({100 * spent[0] / total:.0f}%), "
              f"the rest {total - spent[0]:.2f} s", flush=True)
        if args.ops:
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    return 0


def saved_pipeline(args) -> int:
    """Per kind: the whole ``nlp.pipe``, each component's share and the encoder's share."""
    import spacy
    import torch
    from spacy.tokens import Doc, DocBin
    from torch.profiler import profile

    from spacy_electra.inference import find_encoders, set_inference

    torch.set_num_threads(args.threads)
    nlp = spacy.load(args.pipeline)
    gold = list(DocBin().from_disk(args.dev).get_docs(nlp.vocab))[: args.docs]
    words = [[t.text for t in d] for d in gold]
    n_words = sum(len(w) for w in words)
    component, encoder = next(find_encoders(nlp))
    spent = [0.0]
    encoder.register_forward_pre_hook(lambda *_: spent.__setitem__(0, spent[0] - time.perf_counter()))
    encoder.register_forward_hook(lambda *_: spent.__setitem__(0, spent[0] + time.perf_counter()))
    for kind in args.kinds.split(","):
        set_inference(nlp, kind)
        list(nlp.pipe([Doc(nlp.vocab, words=w) for w in words[:16]], batch_size=64))  # warm-up, lazy builds
        spent[0] = 0.0
        per_component = {}
        start = time.perf_counter()
        docs = [Doc(nlp.vocab, words=w) for w in words]
        per_component["Doc()"] = time.perf_counter() - start
        with profile() if args.ops else contextlib.nullcontext() as prof:
            for name, proc in nlp.pipeline:
                t0 = time.perf_counter()
                docs = list(proc.pipe(docs, batch_size=64))
                per_component[name] = time.perf_counter() - t0
        total = time.perf_counter() - start
        # The hooks sit on the WindowedEncoder, which also runs the int8 and ONNX backends, so
        # the encoder's share covers every kind.
        share = ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in per_component.items())
        print(f"{kind}: {n_words / total:,.0f} words/s; {total:.2f} s in all: {share}; of {component}'s, the torch "
              f"encoder {spent[0]:.2f} s ({100 * spent[0] / total:.0f}% of all)", flush=True)
        if prof is not None:
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
