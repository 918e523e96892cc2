"""`spacy train --gpu-id 0` with `mixed_precision = true`: the spaCy integration on a GPU.

Builds a tiny random ELECTRA checkpoint and a toy tagging corpus (no downloads, no shared data),
trains `electra_tagger` (configs/tagger.cfg) with `spacy train`, on the GPU when `--gpu-id` is
given, then loads the pipeline back on the CPU and checks it tags the dev set. Prints one JSON
line with the outcome. Runs on a bare GPU machine once spaCy's wheels are installed there.

  python benchmarks/gpu_spacy_train.py --work /tmp/st --gpu-id 0      # GPU, fp16 autocast
  python benchmarks/gpu_spacy_train.py --work /tmp/st                 # CPU dry run
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = {
    "DT": ["the", "a", "this", "that"],
    # "saw", "left" and "painted" are nouns or verbs: only the context tells which
    "NN": ["cat", "dog", "city", "river", "house", "car", "tree", "bird", "saw", "left"],
    "VBD": ["saw", "liked", "found", "left", "crossed", "painted"],
    "JJ": ["big", "small", "old", "red", "quiet", "new", "painted"],
    "IN": ["near", "behind", "under", "over"],
    ".": ["."],
}
PATTERNS = [
    ["DT", "NN", "VBD", "DT", "NN", "."],
    ["DT", "JJ", "NN", "VBD", "DT", "NN", "IN", "DT", "NN", "."],
    ["DT", "NN", "IN", "DT", "JJ", "NN", "VBD", "DT", "NN", "."],
]


def make_checkpoint(folder: Path) -> None:
    import torch

    from spacy_electra.checkpoint import save_checkpoint

    from spacy_electra.torch_model import ElectraConfig, ElectraDiscriminator
    from spacy_electra.pieces import WordPieceEncoder

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({w for ws in WORDS.values() for w in ws})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    torch.manual_seed(0)
    config = ElectraConfig(vocab_size=len(vocab), embedding_size=32, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=128, max_position_embeddings=512)
    save_checkpoint(ElectraDiscriminator(config), folder, vocab=WordPieceEncoder.from_directory(folder))


def make_corpus(path: Path, n: int, seed: int) -> None:
    import spacy
    from spacy.tokens import Doc, DocBin

    nlp = spacy.blank("en")
    rng = random.Random(seed)
    docs = DocBin()
    for _ in range(n):
        tags = rng.choice(PATTERNS)
        words = [rng.choice(WORDS[t]) for t in tags]
        docs.add(Doc(nlp.vocab, words=words, tags=tags))
    docs.to_disk(path)


def alias_transformers_v5() -> None:
    """The GPU image has transformers 5, which dropped the modules spacy-transformers 1.4 imports
    its data classes from (``transformers.tokenization_utils``, ``..._fast``). spacy-electra
    needs only the names bound there, so bind them from transformers' top level. No-op on 4.x."""
    import types

    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        return
    import transformers.tokenization_utils as slow  # an alias module in 5.x, without BatchEncoding

    fast = sys.modules.setdefault("transformers.tokenization_utils_fast", types.ModuleType("transformers.tokenization_utils_fast"))
    for module in (slow, fast):
        for name in ("BatchEncoding", "PreTrainedTokenizerFast"):
            if not hasattr(module, name):
                setattr(module, name, getattr(transformers, name))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--steps", type=int, default=150)
    args = p.parse_args()
    alias_transformers_v5()
    import spacy

    # On a machine where the package is on PYTHONPATH but not pip-installed, spaCy cannot see its
    # entry points; importing the modules registers the factories and architectures directly.
    import spacy_electra.layers.heads  # noqa: F401
    import spacy_electra.layers.listeners  # noqa: F401
    import spacy_electra.pipes.tagger  # noqa: F401
    from spacy.cli.train import train
    from spacy.tokens import DocBin
    from spacy.training import Example

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    make_checkpoint(work / "ckpt")
    make_corpus(work / "train.spacy", 400, 0)
    make_corpus(work / "dev.spacy", 100, 1)
    overrides = {
        "paths.train": str(work / "train.spacy"), "paths.dev": str(work / "dev.spacy"),
        "paths.checkpoint": str(work / "ckpt"),
        "components.tagger.model.tok2vec.mixed_precision": args.gpu_id >= 0,
        "training.max_steps": args.steps, "training.max_epochs": 0, "training.eval_frequency": args.steps // 3,
        "training.optimizer.learn_rate.initial_rate": 0.003,
        "training.batcher.size": 300,
    }
    start = time.time()
    train(Path(__file__).resolve().parents[1] / "configs" / "tagger.cfg", work / "out", use_gpu=args.gpu_id,
          overrides=overrides)
    result = {"gpu_id": args.gpu_id, "train_seconds": round(time.time() - start, 1)}
    meta = json.loads((work / "out" / "model-last" / "meta.json").read_text())
    result["dev_tag_acc_during_training"] = meta.get("performance", {}).get("tag_acc")
    trained = spacy.load(work / "out" / "model-last")
    shims = [shim for node in trained.get_pipe("tagger").model.walk() for shim in node.shims]
    result["mixed_precision_setting"] = [bool(getattr(shim, "_mixed_precision", False)) for shim in shims]
    result["device_of_loaded_weights"] = str(next(shims[0].module.parameters()).device)

    # The pipeline trained on the GPU must also work on a CPU-only machine: reload it with CPU ops.
    from thinc.api import require_cpu

    require_cpu()
    nlp = spacy.load(work / "out" / "model-last")
    gold = list(DocBin().from_disk(work / "dev.spacy").get_docs(nlp.vocab))
    result["dev_tag_acc_reloaded_on_cpu"] = nlp.evaluate([Example(nlp(g.text), g) for g in gold])["tag_acc"]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
