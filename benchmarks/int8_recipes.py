"""Accuracy of int8 recipes on a trained pipeline (issue #13): which linear layers stay fp32, and
7- vs 8-bit activations. How the shipped recipe (``backends.fp32_linears``) was chosen.

    PYTHONPATH=. .venv/bin/python benchmarks/int8_recipes.py training/ner_minilm/model-best \\
        training/recipes/corpus/conll_dev.spacy ents_f

Recipes are named KEEP + BITS: KEEP is ``shipped`` (``fp32_linears`` as shipped), ``previous``
(first layer and every feed-forward output), ``ffnout`` (feed-forward outputs only), ``first``
(first layer only) or ``all`` (nothing kept: every linear int8); BITS is 7 or 8. Each recipe swaps
``fp32_linears`` and ``full_range_activations`` in ``model/backends.py`` for the run, rebuilds the
int8 copy and scores the dev set with ``nlp.evaluate``.
"""
from __future__ import annotations

import sys
import time
import warnings
from typing import List


def keep_lists(encoder, fp32_linears) -> dict:
    """Each recipe's fp32 linears; ``fp32_linears`` is the shipped function (``backends`` is
    patched while the recipes run)."""
    projection = ["projection"] if getattr(encoder, "projection", None) is not None else []
    return {"shipped": fp32_linears(encoder), "previous": fp32_linears(encoder, full_range=False),
            "ffnout": projection + [f"layers.{i}.output" for i in range(len(encoder.layers))],
            "first": fp32_linears(encoder, full_range=True), "all": []}


def main(argv: List[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    pipeline, dev, key = argv[:3]
    recipes = argv[3].split(",") if len(argv) > 3 else ["previous7", "previous8", "ffnout8", "first8", "all8", "all7"]
    warnings.filterwarnings("ignore")
    import spacy
    import torch
    from spacy.tokens import Doc, DocBin
    from spacy.training import Example

    from spacy_electra.inference import set_inference
    from spacy_electra.inference import backends

    torch.set_num_threads(1)
    nlp = spacy.load(pipeline)
    gold = list(DocBin().from_disk(dev).get_docs(nlp.vocab))
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]), d) for d in gold]
    original_keep, original_probe = backends.fp32_linears, backends.full_range_activations
    scores = {}

    def score(label: str) -> None:
        start = time.perf_counter()
        value = 100 * nlp.evaluate(examples, batch_size=64)[key]
        scores[label] = value
        print(f"{label:12s} {key} {value:.2f} ({value - scores.get('fp32', value):+.2f}) {time.perf_counter() - start:.0f} s", flush=True)

    set_inference(nlp, "fp32")
    score("fp32")
    try:
        for recipe in recipes:
            keep, bits = recipe[:-1], recipe[-1]
            backends.fp32_linears = lambda encoder, keep=keep, **_: keep_lists(encoder, original_keep)[keep]
            backends.full_range_activations = lambda bits=bits: bits == "8"
            set_inference(nlp, "fp32")  # drop the int8 copy of the previous recipe
            set_inference(nlp, "int8")
            score(recipe)
    finally:
        backends.fp32_linears, backends.full_range_activations = original_keep, original_probe
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
