"""``spacy-electra demo``: the whole path from raw text to an evaluated, reloadable pipeline,
small enough for a laptop CPU in a few minutes.

raw text -> WordPiece vocab -> RTD pretraining (tiny model) -> HF-format discriminator ->
``electra_ner`` fine-tuned with spaCy -> dev scores -> pipeline saved, reloaded offline.
Real data from ``../shared/data`` is used when present (Gutenberg text, CoNLL-2003); otherwise a
small synthetic corpus, so the demo runs anywhere.
"""
import random
import shutil
import time
from pathlib import Path
from typing import List, Optional, Tuple

import typer


def _texts(data: Optional[Path], work: Path) -> Path:
    books = sorted((data / "pretrain" / "gutenberg").glob("*.txt")) if data else []
    target = work / "text.txt"
    if books:
        lines = books[0].read_text(encoding="utf8", errors="ignore").splitlines()[:6000]
        target.write_text("\n".join(lines) + "\n")
    else:
        rng = random.Random(0)
        words = "the a city river paris london company bank said new old was is in of and to".split()
        target.write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(60)) for _ in range(400)))
    return target


def _ner_examples(nlp, data: Optional[Path]) -> Tuple[list, list]:
    from spacy.training import Example

    conll = data / "ner" / "conll2003" if data else None
    if conll and (conll / "train.txt").exists():
        from .convert import conll_ner_to_docs

        train = list(conll_ner_to_docs(conll / "train.txt", nlp=nlp))[:40]
        dev = list(conll_ner_to_docs(conll / "valid.txt", nlp=nlp))[:10]
    else:
        from spacy.tokens import Doc, Span

        rng = random.Random(0)
        docs = []
        for _ in range(120):
            place = rng.choice(["Paris", "London", "Berlin"])
            doc = Doc(nlp.vocab, words=["The", "bank", "in", place, "said", "so", "."])
            doc.ents = [Span(doc, 3, 4, label="LOC")]
            docs.append(doc)
        train, dev = docs[:100], docs[100:]
    to_examples = lambda docs: [Example(nlp.make_doc(d.text), d) for d in docs]  # noqa: E731
    return to_examples(train), to_examples(dev)


def run_demo(output: Path, data: Optional[Path], pretrain_steps: int = 60, finetune_steps: int = 30) -> dict:
    import spacy

    from .pretrain import load_config, pretrain, train_vocab

    start = time.time()
    work = output / "work"
    work.mkdir(parents=True, exist_ok=True)
    text = _texts(data, work)
    typer.echo(f"1. vocabulary from {text}")
    train_vocab([text], work / "vocab", vocab_size=2000)
    typer.echo("2. RTD pretraining (tiny model)")
    config = load_config(None, {
        "model.size": "tiny", "corpus.train": [str(text)], "corpus.vocab": str(work / "vocab"),
        "corpus.cache": str(work / "corpus"), "corpus.seq_length": 64, "training.max_steps": pretrain_steps,
        "training.batch_size": 16, "training.warmup_fraction": 0.1,
        "training.learning_rate": 5e-4, "training.device": "cpu", "training.log_every": max(1, pretrain_steps // 4),
        "training.checkpoint_every": pretrain_steps, "training.progress_bar": False,
    })
    pretrain(config, work / "pretrain")
    checkpoint = work / "pretrain" / "discriminator"
    typer.echo(f"3. fine-tuning electra_ner from {checkpoint}")
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config={"model": {"tok2vec": {"checkpoint": str(checkpoint), "layer_lr_decay": 0.8}}})
    train, dev = _ner_examples(nlp, data)
    optimizer = nlp.initialize(lambda: train)
    optimizer.learn_rate = 1e-3
    for step in range(finetune_steps):
        batch = random.Random(step).sample(train, min(16, len(train)))
        losses = nlp.update(batch, sgd=optimizer)
    scores = nlp.evaluate(dev)
    typer.echo(f"   dev ents_f {scores['ents_f']:.3f} (tiny model, {finetune_steps} steps: a smoke run, not a benchmark)")
    typer.echo("4. save, delete the checkpoint, reload offline")
    nlp.to_disk(output / "pipeline")
    shutil.rmtree(work / "pretrain")
    reloaded = spacy.load(output / "pipeline")
    doc = reloaded("The bank in Paris said so.")
    typer.echo(f"   {doc.text!r} -> {[(e.text, e.label_) for e in doc.ents]}")
    typer.echo(f"done in {time.time() - start:.0f}s; pipeline in {output / 'pipeline'}")
    return scores
