"""Token-level ROC AUC of replaced-token detection (``electra_rtd``) on a corrupted dev set.

A share (``--rate``, default 10%) of the words of a CoNLL-2003 style dev set (``token ... NER``
per line, blank lines between sentences) is replaced by words drawn from that set's own word
frequency distribution (never the word itself), as ELECTRA's generator would do with no context.
Each sentence is one Doc. Every word is then scored by

* the discriminator: ``token._.rtd_prob`` of an ``electra_rtd`` pipeline on CHECKPOINT;
* a baseline, word rarity: -log of the word's relative frequency in the clean set.

and the ROC AUC of each against the true replaced/original labels is reported (0.5 = chance).
Replacements follow the same frequency distribution as the words they replace, so rarity is
close to 0.5 by construction: what a discriminator gains over it comes from context.

    python benchmarks/rtd_auc.py CHECKPOINT [--data valid.txt] [--rate 0.1] [--seed 0] [--limit N]

CHECKPOINT is an ELECTRA discriminator (a folder or a hub id), e.g. the ``discriminator/``
folder written by ``spacy-electra pretrain``. Without the data file the script says so and
exits with status 0.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ner" / "conll2003" / "valid.txt"


def read_conll_sentences(path: Path, limit: Optional[int] = None) -> List[List[str]]:
    """The words of each sentence (first column), without -DOCSTART- lines."""
    sentences: List[List[str]] = []
    words: List[str] = []
    with path.open(encoding="utf8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                if words:
                    sentences.append(words)
                    words = []
                    if limit is not None and len(sentences) >= limit:
                        return sentences
                continue
            word = line.split()[0]
            if word != "-DOCSTART-":
                words.append(word)
    if words and (limit is None or len(sentences) < limit):
        sentences.append(words)
    return sentences


def corrupt(sentences: Sequence[Sequence[str]], rate: float, seed: int) -> Tuple[List[List[str]], List[List[int]], Counter]:
    """Replace ``rate`` of all words (positions drawn uniformly, without replacement) by words drawn
    from the set's unigram distribution, never the original word. Returns the corrupted
    sentences, 0/1 labels per word and the clean word counts."""
    counts = Counter(word for sentence in sentences for word in sentence)
    if len(counts) < 2:
        raise SystemExit("The data has fewer than two distinct words; nothing can be replaced.")
    vocab = list(counts)
    cdf = np.cumsum(np.asarray([counts[w] for w in vocab], dtype=np.float64))
    cdf /= cdf[-1]
    rng = np.random.default_rng(seed)
    flat = [(i, j) for i, sentence in enumerate(sentences) for j in range(len(sentence))]
    n_replace = int(round(rate * len(flat)))
    chosen = rng.choice(len(flat), size=n_replace, replace=False)
    corrupted = [list(sentence) for sentence in sentences]
    labels = [[0] * len(sentence) for sentence in sentences]
    for k in chosen.tolist():
        i, j = flat[k]
        original = corrupted[i][j]
        word = original
        while word == original:
            word = vocab[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(vocab) - 1)]
        corrupted[i][j] = word
        labels[i][j] = 1
    return corrupted, labels, counts


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic, ties counted as one half (average ranks)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each group of ties
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def window_for(checkpoint: str, window: int, stride: int) -> Tuple[int, int]:
    """``window``/``stride`` lowered to what the checkpoint's position embeddings allow (read
    through the package's checkpoint reader, config only)."""
    from spacy_electra.checkpoint import resolve_checkpoint
    from spacy_electra.checkpoint.reader import read_config

    config, _ = read_config(resolve_checkpoint(checkpoint))
    window = min(window, config.max_position_embeddings - 2)
    stride = max((window + 1) // 2, min(stride, window))
    return window, stride


def discriminator_scores(checkpoint: str, sentences: Sequence[Sequence[str]], *, window: int, stride: int, batch_size: int) -> List[float]:
    import spacy
    from spacy.tokens import Doc

    nlp = spacy.blank("en")
    nlp.add_pipe("electra_rtd", config={"model": {"checkpoint": checkpoint, "window": window, "stride": stride}})
    nlp.initialize()
    docs = (Doc(nlp.vocab, words=list(words)) for words in sentences)
    return [p for doc in nlp.pipe(docs, batch_size=batch_size) for p in doc._.rtd_probs]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="an ELECTRA discriminator: folder or hub id")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CoNLL-2003 style dev file (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=0.1, help="share of words replaced (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if not 0.0 < args.rate < 1.0:
        parser.error(f"--rate {args.rate} must be between 0 and 1, e.g. 0.1.")
    if not args.data.is_file():
        print(f"skipped: no data file at {args.data} (give one with --data).")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    sentences = read_conll_sentences(args.data, args.limit)
    corrupted, labels, counts = corrupt(sentences, args.rate, args.seed)
    y = np.asarray([label for row in labels for label in row])
    total = sum(counts.values())
    rarity = np.asarray([-math.log(counts[w] / total) for row in corrupted for w in row])
    window, stride = window_for(args.checkpoint, args.window, args.stride)
    start = time.perf_counter()
    probs = np.asarray(discriminator_scores(args.checkpoint, corrupted, window=window, stride=stride, batch_size=args.batch_size))
    seconds = time.perf_counter() - start
    assert len(probs) == len(y)
    result = {
        "checkpoint": args.checkpoint,
        "data": str(args.data),
        "sentences": len(sentences),
        "words": int(len(y)),
        "replaced": int(y.sum()),
        "rate": args.rate,
        "seed": args.seed,
        "auc_discriminator": roc_auc(y, probs),
        "auc_rarity_baseline": roc_auc(y, rarity),
        "mean_prob_replaced": float(probs[y == 1].mean()),
        "mean_prob_original": float(probs[y == 0].mean()),
        "flagged_at_0.5": int((probs > 0.5).sum()),
        "seconds": round(seconds, 1),
    }
    for key, value in result.items():
        print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
