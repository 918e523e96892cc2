"""Fine-tune ELECTRA encoders on SST-2 and CoNLL-2003 from different initialisations.

The evidence for ELECTRA's central claim: the same encoder shape fine-tuned from (a) an RTD
checkpoint, (b) random initialisation and (c) a same-size MLM checkpoint, same recipe and data.
Plain PyTorch with our model classes, so it runs on a bare GPU machine (torch, numpy, tokenizers).

  # 1. tokenize once (also what travels to a GPU machine: no raw text needed there)
  python benchmarks/finetune_compare.py prepare --vocab corpus/vocab --data ../shared/data \
      --output gpu_carry/finetune.npz
  # 2. compare; `random:DIR` builds DIR's shape with fresh weights
  python benchmarks/finetune_compare.py run --data gpu_carry/finetune.npz \
      --init rtd=training/cpu_rtd/discriminator --init mlm=training/cpu_mlm/mlm \
      --init random=random:training/cpu_rtd/discriminator --sst2-limit 4000 --conll-limit 3000

Recipe (ELECTRA fine-tuning, section 4 of REFERENCE.md): AdamW lr 3e-4 (small), layer-wise decay
0.8, 10% warmup then linear decay, batch 32, weight decay 0.01; SST-2 head on [CLS] (dense, GELU,
dropout, linear), CoNLL tags from the first piece of each word. Dev scores: SST-2 accuracy,
CoNLL entity-level F1 (exact span and type match).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spacy_electra.checkpoint import load_checkpoint, read_checkpoint

from spacy_electra.torch_model import ElectraConfig, ElectraEncoder  # noqa: E402
from spacy_electra.pretrain.optim import layer_decay_groups, lr_factor  # noqa: E402

MAX_LEN = 128
CONLL_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


# -- data ---------------------------------------------------------------------------------------
def read_sst2(path: Path) -> Tuple[List[str], List[int]]:
    texts, labels = [], []
    with open(path, encoding="utf8") as f:
        next(f)
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            texts.append(text)
            labels.append(int(label))
    return texts, labels


def read_conll(path: Path) -> List[Tuple[List[str], List[str]]]:
    """(words, BIO tags) per sentence, read by the package's converter (spaCy's CoNLL reader)."""
    from spacy_electra.convert import conll_ner_to_docs

    sents = []
    for doc in conll_ner_to_docs(path):
        for sent in doc.sents:
            tags = ["O" if t.ent_iob_ == "O" else f"{t.ent_iob_}-{t.ent_type_}" for t in sent]
            sents.append(([t.text for t in sent], tags))
    return sents


def flat(rows: Sequence[np.ndarray], dtype=np.int32) -> Tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    return (np.concatenate(rows).astype(dtype) if rows else np.zeros(0, dtype)), offsets


def prepare(vocab_dir: Path, data: Path, output: Path) -> None:
    """Tokenize SST-2 and CoNLL-2003 (train and dev) into one .npz of flat id arrays."""
    from spacy_electra.checkpoint import read_vocabulary

    enc = read_vocabulary(vocab_dir)
    arrays: Dict[str, np.ndarray] = {}
    for split, name in (("train", "train.tsv"), ("dev", "dev.tsv")):
        texts, labels = read_sst2(data / "textcat" / "sst2" / name)
        rows = [np.concatenate([[enc.cls_id], ids[: MAX_LEN - 2], [enc.sep_id]]) for ids in enc.encode_texts(texts)]
        arrays[f"sst2_{split}_ids"], arrays[f"sst2_{split}_offsets"] = flat(rows)
        arrays[f"sst2_{split}_labels"] = np.asarray(labels, dtype=np.int64)
    tag_index = {t: i for i, t in enumerate(CONLL_TAGS)}
    for split, name in (("train", "train.txt"), ("dev", "valid.txt")):
        rows, labels, gold = [], [], []
        for words, tags in read_conll(data / "ner" / "conll2003" / name):
            pieces = enc.encode(words)
            ids, tag_ids = [enc.cls_id], [-100]
            for word_pieces, tag in zip(pieces.per_token(), tags):
                word_pieces = word_pieces or [enc.unk_id]
                ids += word_pieces
                tag_ids += [tag_index[tag]] + [-100] * (len(word_pieces) - 1)
            ids, tag_ids = ids[: MAX_LEN - 1] + [enc.sep_id], tag_ids[: MAX_LEN - 1] + [-100]
            rows.append(np.asarray(ids))
            labels.append(np.asarray(tag_ids))
            gold.append(np.asarray([tag_index[t] for t in tags]))  # all words, for recall
        arrays[f"conll_{split}_ids"], arrays[f"conll_{split}_offsets"] = flat(rows)
        arrays[f"conll_{split}_tags"], _ = flat(labels, np.int64)
        arrays[f"conll_{split}_gold"], arrays[f"conll_{split}_gold_offsets"] = flat(gold, np.int64)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, vocab_size=enc.vocab_size, pad_id=enc.pad_id, **arrays)
    print(f"Wrote {output}: SST-2 {len(arrays['sst2_train_labels'])}/{len(arrays['sst2_dev_labels'])}, "
          f"CoNLL {len(arrays['conll_train_offsets']) - 1}/{len(arrays['conll_dev_offsets']) - 1} sentences")


def rows_of(data, prefix: str, key: str = "ids", offsets: str = "offsets") -> List[np.ndarray]:
    values, offs = data[f"{prefix}_{key}"], data[f"{prefix}_{offsets}"]
    return [values[offs[i] : offs[i + 1]] for i in range(len(offs) - 1)]


def pad(rows: Sequence[np.ndarray], value: int) -> torch.Tensor:
    out = np.full((len(rows), max(len(r) for r in rows)), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out)


# -- scoring ------------------------------------------------------------------------------------
def spans(tags: Sequence[int]) -> set:
    """Entity spans (label, start, end) of a BIO tag-id sequence, read as spaCy reads IOB tags
    (an I- without a matching B- starts an entity)."""
    from spacy.training.iob_utils import iob_to_biluo, tags_to_entities

    return set(tags_to_entities(iob_to_biluo([CONLL_TAGS[t] for t in tags])))


def span_f1(pred: Sequence[Sequence[int]], gold: Sequence[Sequence[int]]) -> float:
    """Micro span F1, counted by spaCy's PRFScore (what spaCy reports as ents_f)."""
    from spacy.scorer import PRFScore

    score = PRFScore()
    for p, g in zip(pred, gold):
        score.score_set(spans(p), spans(g))
    return score.fscore


# -- models -------------------------------------------------------------------------------------
class Classifier(nn.Module):
    def __init__(self, encoder: ElectraEncoder, n_labels: int, token_level: bool):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder, self.token_level = encoder, token_level
        self.dropout = nn.Dropout(0.1)
        self.dense = None if token_level else nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_labels)
        for layer in (self.dense, self.out):
            if layer is not None:
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder.encode(ids, mask)
        if self.token_level:
            return self.out(self.dropout(hidden))
        x = self.dropout(F.gelu(self.dense(self.dropout(hidden[:, 0]))))
        return self.out(x)


def build_encoder(spec: str, seed: int) -> ElectraEncoder:
    torch.manual_seed(seed)
    if spec.startswith("random:"):
        config = read_checkpoint(Path(spec[len("random:"):]), vocab="ignored").config
        config.extra = {}
        return ElectraEncoder(config)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_checkpoint(spec, kind="encoder")


def param_groups(model: Classifier, lr: float, decay: float) -> List[dict]:
    """Layer-wise lr decay: head lr, layer i (1-based of L) lr*decay^(L+1-i), embeddings
    (and projection) lr*decay^(L+1); the package's own grouping."""
    return layer_decay_groups(model, lr=lr, decay=decay, n_layers=model.encoder.config.num_hidden_layers)


def finetune(spec: str, data, task: str, *, limit: Optional[int], epochs: float, lr: float, decay: float,
             batch_size: int, seed: int, device: torch.device, precision: str) -> Dict[str, float]:
    pad_id = int(data["pad_id"])
    token_level = task == "conll"
    train_x = rows_of(data, f"{task}_train")
    train_y = rows_of(data, "conll_train", "tags") if token_level else list(data["sst2_train_labels"])
    rng = np.random.default_rng(seed)
    if limit is not None and limit < len(train_x):
        keep = rng.permutation(len(train_x))[:limit]
        train_x, train_y = [train_x[i] for i in keep], [train_y[i] for i in keep]
    model = Classifier(build_encoder(spec, seed), len(CONLL_TAGS) if token_level else 2, token_level).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, lr, decay), eps=1e-6)
    n_steps = max(1, math.ceil(len(train_x) * epochs / batch_size))
    warmup = max(1, n_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, n_steps))
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else torch.autocast(device.type, enabled=False)
    model.train()
    start, order, pos = time.perf_counter(), rng.permutation(len(train_x)), 0
    for step in range(n_steps):
        if pos + batch_size > len(order):
            order, pos = rng.permutation(len(train_x)), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        ids = pad([train_x[i] for i in idx], pad_id).to(device)
        mask = (ids != pad_id).long()
        with amp:
            logits = model(ids, mask).float()
        if token_level:
            target = pad([train_y[i] for i in idx], -100).to(device)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
        else:
            loss = F.cross_entropy(logits, torch.tensor([train_y[i] for i in idx], device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    train_s = time.perf_counter() - start
    return {"score": evaluate(model, data, task, device, amp), "train_examples": len(train_x),
            "steps": n_steps, "train_seconds": round(train_s, 1), "final_loss": loss.item()}


@torch.no_grad()
def evaluate(model: Classifier, data, task: str, device: torch.device, amp) -> float:
    model.eval()
    pad_id = int(data["pad_id"])
    xs = rows_of(data, f"{task}_dev")
    preds: List[np.ndarray] = []
    for i in range(0, len(xs), 128):
        ids = pad(xs[i : i + 128], pad_id).to(device)
        with amp:
            logits = model(ids, (ids != pad_id).long()).float()
        preds += list(logits.argmax(-1).cpu().numpy())
    if task == "sst2":
        return float(np.mean(np.asarray(preds) == data["sst2_dev_labels"]))
    tags = rows_of(data, "conll_dev", "tags")
    gold = rows_of(data, "conll_dev", "gold", "gold_offsets")
    words_pred = []
    for p, t, g in zip(preds, tags, gold):
        firsts = p[: len(t)][t != -100]
        words_pred.append(list(firsts) + [0] * (len(g) - len(firsts)))  # truncated words: O
    return span_f1(words_pred, [list(g) for g in gold])


@torch.no_grad()
def representation_stats(spec: str, data, n_sentences: int = 64, seed: int = 0) -> Dict[str, float]:
    """How collapsed an encoder's top layer is on SST-2 dev sentences: mean cosine between token
    vectors and the effective rank ((sum s)^2 / sum s^2 of the centred singular values). A discriminator stuck on its prior learns to emit a constant, and its top
    layer collapses; that is what makes such a checkpoint fine-tune worse than random init."""
    encoder = build_encoder(spec, seed).eval()
    rows = rows_of(data, "sst2_dev")[:n_sentences]
    ids = pad(rows, int(data["pad_id"]))
    mask = (ids != int(data["pad_id"])).long()
    layers = encoder.encode_layers(ids, mask)
    hidden = layers[-1][mask.bool()]
    unit = F.normalize(hidden, dim=-1)
    cos = unit @ unit.T
    n = len(unit)
    mean_cos = float((cos.sum() - n) / (n * (n - 1)))
    sv = torch.linalg.svdvals(hidden - hidden.mean(0))
    return {"mean_token_cosine": mean_cos, "effective_rank": float(sv.sum() ** 2 / (sv ** 2).sum()),
            "width": hidden.shape[-1], "neighbour_attention": attention_locality(encoder, layers[:-1], mask)}


@torch.no_grad()
def attention_locality(encoder: ElectraEncoder, layer_inputs: Sequence[torch.Tensor], mask: torch.Tensor) -> List[float]:
    """Per layer, the attention mass a token puts on its two neighbours (i-1, i+1), averaged over
    tokens, for the layer's most local head. ``layer_inputs`` are the hidden states entering each
    layer (``encode_layers(...)[:-1]``). Uniform attention over n tokens gives about 2/n; a model
    that has learnt word order concentrates far more there. Replaced-token detection needs this
    (a unigram-sampled "the" is only odd next to its neighbours); a bag of words does not suffice."""
    keep = mask.bool()
    out = []
    for layer, x in zip(encoder.layers, layer_inputs):
        att = layer.attention
        q, k, _ = att.heads(x)
        scores = (q @ k.transpose(-1, -2)) / att.head_dim ** 0.5
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        probs = scores.softmax(-1)  # (batch, heads, n, n)
        mass = torch.zeros(probs.shape[:3])
        mass[..., :-1] += torch.diagonal(probs, 1, -2, -1)  # query i -> key i+1
        mass[..., 1:] += torch.diagonal(probs, -1, -2, -1)  # query i -> key i-1
        per_head = (mass * keep[:, None]).sum((0, 2)) / keep.sum()
        out.append(float(per_head.max()))  # the most local head of the layer
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--vocab", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--output", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True, help=".npz written by `prepare`")
    r.add_argument("--init", action="append", required=True, help="NAME=DIR or NAME=random:DIR")
    r.add_argument("--task", action="append", choices=["sst2", "conll"])
    r.add_argument("--sst2-limit", type=int, default=None)
    r.add_argument("--conll-limit", type=int, default=None)
    r.add_argument("--epochs", type=float, default=1.0)
    r.add_argument("--conll-epochs", type=float, default=None)
    r.add_argument("--lr", type=float, default=3e-4)
    r.add_argument("--layer-decay", type=float, default=0.8)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--seeds", type=int, nargs="+", default=[0])
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--output", type=Path, default=None, help="JSON results file (appended per run)")
    rp = sub.add_parser("collapse", help="top-layer collapse statistics of each --init")
    rp.add_argument("--data", type=Path, required=True)
    rp.add_argument("--init", action="append", required=True)
    sm = sub.add_parser("summary", help="table of a results JSONL file")
    sm.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    if args.command == "collapse":
        data = dict(np.load(args.data))
        print("| init | mean token cosine (top layer) | effective rank | width | neighbour attention of the most local head, per layer |\n"
              "| --- | --- | --- | --- | --- |")
        for item in args.init:
            name, spec = item.split("=", 1)
            r = representation_stats(spec, data)
            near = " ".join(f"{x:.2f}" for x in r["neighbour_attention"])
            print(f"| {name} | {r['mean_token_cosine']:.3f} | {r['effective_rank']:.1f} | {r['width']} | {near} |")
        return
    if args.command == "summary":
        print_summary([json.loads(x) for x in args.results.read_text().splitlines() if x.strip()])
        return
    if args.command == "prepare":
        if not (args.data / "textcat" / "sst2").exists():
            raise SystemExit(f"No SST-2 under {args.data}; pass --data pointing at ../shared/data.")
        prepare(args.vocab, args.data, args.output)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    data = dict(np.load(args.data))
    device = torch.device(args.device)
    results = []
    # seeds outermost, so a run cut short still has every init for the first seed(s)
    for seed in args.seeds:
        for task in args.task or ["sst2", "conll"]:
            for item in args.init:
                name, spec = item.split("=", 1)
                limit = args.sst2_limit if task == "sst2" else args.conll_limit
                epochs = args.conll_epochs if (task == "conll" and args.conll_epochs) else args.epochs
                res = finetune(spec, data, task, limit=limit, epochs=epochs, lr=args.lr, decay=args.layer_decay,
                               batch_size=args.batch_size, seed=seed, device=device, precision=args.precision)
                res.update(task=task, init=name, checkpoint=spec, seed=seed, epochs=epochs, lr=args.lr)
                results.append(res)
                print(json.dumps(res), flush=True)
                if args.output:
                    with open(args.output, "a") as f:
                        f.write(json.dumps(res) + "\n")
    print_summary(results)


def print_summary(results: List[dict]) -> None:
    """Mean dev score per task and init (SST-2 accuracy, CoNLL entity F1), seeds listed."""
    print("\n| task | init | mean dev score | seeds | per seed |\n| --- | --- | --- | --- | --- |")
    for task in dict.fromkeys(r["task"] for r in results):
        for init in dict.fromkeys(r["init"] for r in results):
            scores = [r["score"] for r in results if r["task"] == task and r["init"] == init]
            if scores:
                print(f"| {task} | {init} | {np.mean(scores):.4f} | {len(scores)} | {', '.join(f'{x:.4f}' for x in scores)} |")


if __name__ == "__main__":
    main()
