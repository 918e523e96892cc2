"""The distillation loop: the student learns the teacher's output distributions.

Loss per distilled component, summed over tokens (token heads) or docs (doc heads), as the
components' own losses are (``pipes/heads.py``):

    soft_weight * T^2 * KL(teacher_T || student_T)  +  gold_weight * the component's own loss

``teacher_T`` / ``student_T`` are the softmax (tagger, NER tags, exclusive textcat) or the
per-label sigmoid (multi-label textcat) of the logits divided by the temperature T; the gradient
w.r.t. the student's logits is ``T * (student_T - teacher_T)``. The gold term comes from the
component's ``get_loss`` and is zero where a doc has no gold annotation for it (plain text,
JSONL, a .spacy doc without that annotation). With ``hidden_weight`` > 0, each encoder adds
``hidden_weight * sum_j MSE(student layer j, teacher layer layer_map[j])`` (the embedding
outputs included as layer "-1"), the mean over the non-padding pieces and the width, on each
doc's first ``max_position_embeddings`` pieces as one window; its gradient reaches the student's
torch weights directly and is applied by the same optimizer step.

A step runs as ``nlp.update`` does: a shared ``electra_transformer`` runs once
(``ElectraTransformer.update``) and hands its output to the listeners of the heads; each head's
model is run with ``begin_update`` and given the distillation gradient; the last listener runs
the encoder's backward pass; then every trained component takes the optimizer step (thinc
``Adam``, no averaging). Heads with their own encoder run the same way without the
upstream. The teacher predicts each batch on copies of the docs.

Run folder (``OUTPUT``): ``checkpoints/last/`` (the student pipeline, ``state.pt``: step,
optimizer moments keyed by component and node so they outlive object ids, best dev score, the
settings) written atomically every ``checkpoint_every`` steps and at the end; ``model-last``
when ``max_steps`` is reached; ``model-best`` (best dev score, with ``--dev``);
``distill_log.jsonl``. Rerunning the command continues from ``checkpoints/last`` (the batch of
step s is drawn from the seed and s alone, and each step reseeds its dropout, so a resumed run
takes the same steps as an uninterrupted one).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from spacy.util import combine_score_weights, fix_random_seed
from thinc.api import Adam, Optimizer, set_dropout_rate

from ..atomic import atomic_file, atomic_folder
from ..checkpoint.training_state import read_training_state
from ..pipes.heads import TokenClassifierPipe
from ..pipes.textcat import ElectraTextCat
from ..pipes.transformer import ElectraTransformer
from ..torch_model.windowed import WindowedEncoder
from .config import DistillConfig, DistillError
from .corpus import has_gold, read_corpus
from .student import (
    build_student,
    check_listeners,
    component,
    distilled_heads,
    encoder_sizes,
    labels_of,
    load_teacher,
    own_encoder,
    trained_components,
)

CHECKPOINT = Path("checkpoints") / "last"
STATE = "state.pt"


# -- losses -----------------------------------------------------------------------------------
def softmax_distill(ops, student: Any, teacher: Any, temperature: float) -> Tuple[float, Any]:
    """T^2 * KL(softmax(t/T) || softmax(s/T)) summed over rows, and its gradient w.r.t. s."""
    t = ops.softmax(teacher / temperature, axis=-1)
    s = ops.softmax(student / temperature, axis=-1)
    xp = ops.xp
    kl = float((t * (xp.log(t + 1e-12) - xp.log(s + 1e-12))).sum())
    return temperature**2 * kl, (temperature * (s - t)).astype("float32")


def sigmoid_distill(ops, student: Any, teacher: Any, temperature: float) -> Tuple[float, Any]:
    """T^2 * the binary KL of sigmoid(t/T) from sigmoid(s/T), summed, and its gradient."""
    xp = ops.xp
    t = ops.sigmoid(teacher / temperature)
    s = ops.sigmoid(student / temperature)
    eps = 1e-7
    kl = t * (xp.log(t + eps) - xp.log(s + eps)) + (1 - t) * (xp.log(1 - t + eps) - xp.log(1 - s + eps))
    return temperature**2 * float(kl.sum()), (temperature * (s - t)).astype("float32")


def head_loss(pipe: Any, examples: List[Example], scores: Any, targets: Any, config: DistillConfig) -> Tuple[float, Any]:
    """The loss of one component on one batch and the gradient of its logits (module docstring)."""
    ops = pipe.model.ops
    T, w_soft, w_gold = config.loss.temperature, config.loss.soft_weight, config.loss.gold_weight
    if isinstance(pipe, TokenClassifierPipe):
        parts = [softmax_distill(ops, s, t, T) for s, t in zip(scores, targets)]
        loss = w_soft * sum(p[0] for p in parts)
        grads = [w_soft * p[1] for p in parts]
        if w_gold and any(has_gold(eg) for eg in examples):
            gold_loss, gold_grads = pipe.get_loss(examples, scores)
            loss += w_gold * gold_loss
            grads = [g + w_gold * d for g, d in zip(grads, gold_grads)]
        return loss, grads
    if isinstance(pipe, ElectraTextCat):
        fn = sigmoid_distill if pipe.multi_label else softmax_distill
        loss, grad = fn(ops, scores, targets, T)
        loss, grad = w_soft * loss, w_soft * grad
        if w_gold and any(eg.reference.cats for eg in examples):
            gold_loss, gold_grad = pipe.get_loss(examples, scores)
            loss, grad = loss + w_gold * gold_loss, grad + w_gold * gold_grad
        return loss, grad
    raise DistillError(f"{pipe.name!r} is not a component distill can train.")  # pragma: no cover


# -- one step ---------------------------------------------------------------------------------
def teacher_logits(teacher: Language, docs: List[Any]) -> Dict[str, Any]:
    """The logits of every distilled head of the teacher for ``docs`` (copies are used, so
    the teacher's ``doc._.trf_data`` never reaches the student's docs)."""
    docs = [doc.copy() for doc in docs]
    heads = set(distilled_heads(teacher))
    trained = set(trained_components(teacher))
    out: Dict[str, Any] = {}
    pipe: Any
    for name, pipe in teacher.pipeline:
        if name not in trained:
            continue
        if isinstance(pipe, ElectraTransformer):
            pipe.set_annotations(docs, pipe.predict(docs))
        elif name in heads:
            out[name] = pipe.model.predict(docs)
    return out


def hidden_loss(teacher: WindowedEncoder, student: WindowedEncoder, docs: List[Any], layer_map: List[int], weight: float, dropout: bool) -> float:
    """The hidden-state term of one encoder (module docstring); backpropagates it into the
    student's torch parameters and returns its value."""
    vocab = student.wordpiece
    limit = student.config.max_position_embeddings - 2
    rows: List[List[int]] = []
    for pieces in vocab.encode_batch([[token.text for token in doc] for doc in docs]):
        rows.append([vocab.cls_id, *(int(i) for i in pieces.ids[:limit]), vocab.sep_id])
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), vocab.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    device = next(student.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        targets = teacher.encoder.encode_layers(ids, mask, dropout=False)
    outputs = student.encoder.encode_layers(ids, mask, dropout=dropout)
    keep = mask.bool()
    pairs = [(outputs[0], targets[0])] + [(outputs[j + 1], targets[i + 1]) for j, i in enumerate(layer_map)]
    loss = torch.stack([torch.nn.functional.mse_loss(s[keep], t[keep]) for s, t in pairs]).sum()
    (weight * loss).backward()
    return weight * float(loss.detach())


def train_step(
    student: Language,
    teacher: Language,
    examples: List[Example],
    optimizer: Optimizer,
    config: DistillConfig,
    layer_maps: Optional[Dict[str, List[int]]] = None,
) -> Dict[str, float]:
    """One update of the student on ``examples``; returns the loss of each distilled head (and
    ``hidden:NAME`` per encoder with ``loss.hidden_weight``; ``layer_maps`` gives, per
    component that owns an encoder, the teacher layers its layers started from)."""
    docs = [eg.predicted for eg in examples]
    targets = teacher_logits(teacher, docs)
    heads = set(distilled_heads(student))
    trained = trained_components(student)
    drop = config.training.dropout
    losses: Dict[str, float] = {}
    pipe: Any
    for name, pipe in student.pipeline:
        if name not in trained:
            continue
        if isinstance(pipe, ElectraTransformer):
            pipe.update(examples, drop=drop, sgd=None, losses={})
        elif name in heads:
            set_dropout_rate(pipe.model, drop)
            scores, backprop = pipe.model.begin_update(docs)
            loss, d_scores = head_loss(pipe, examples, scores, targets[name], config)
            backprop(d_scores)
            losses[name] = loss
    if config.loss.hidden_weight:
        for name, layer_map in (layer_maps or {}).items():
            t_module, s_module = own_encoder(component(teacher, name).model), own_encoder(component(student, name).model)
            if t_module is not None and s_module is not None:
                losses[f"hidden:{name}"] = hidden_loss(t_module, s_module, docs, layer_map, config.loss.hidden_weight, drop > 0)
    for name in trained:
        component(student, name).finish_update(optimizer)
    return losses


def make_optimizer(config: DistillConfig) -> Optimizer:
    t = config.training
    return Adam(learn_rate=t.learn_rate, grad_clip=t.grad_clip, L2=0.0, use_averages=False)


def learn_rate_at(config: DistillConfig, step: int) -> float:
    """Linear warmup over ``warmup_steps``, then constant (``step`` is 0-based)."""
    t = config.training
    return t.learn_rate * min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else t.learn_rate


def batch_indices(n_docs: int, batch_size: int, seed: int, step: int) -> List[int]:
    """The corpus docs of ``step``: consecutive slices of a shuffle per epoch, a function of
    the seed and the step alone (so a resumed run draws what an uninterrupted one would)."""
    out: List[int] = []
    start = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_docs)
        order = list(range(n_docs))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.extend(order[offset : offset + batch_size - len(out)])
    return out


# -- optimizer state across runs --------------------------------------------------------------
def _stable_keys(nlp: Language, names: List[str]) -> Tuple[Dict[Tuple[int, str], str], Dict[str, Tuple[int, str]]]:
    """Optimizer key (object id, parameter) <-> a name that outlives the objects:
    ``component/node index[/shim j]|parameter``."""
    to_stable: Dict[Tuple[int, str], str] = {}
    for name in names:
        for i, node in enumerate(component(nlp, name).model.walk()):
            for param in node.param_names:
                to_stable.setdefault((node.id, param), f"{name}/{i}|{param}")
            for j, shim in enumerate(node.shims):
                module = getattr(shim, "module", None)
                if module is not None:
                    for param, _ in module.named_parameters():
                        to_stable.setdefault((shim.id, param), f"{name}/{i}/shim{j}|{param}")
    return to_stable, {v: k for k, v in to_stable.items()}


def optimizer_state(optimizer: Optimizer, nlp: Language, names: List[str]) -> Dict[str, Any]:
    to_stable, _ = _stable_keys(nlp, names)
    state: Dict[str, Any] = {}
    for attr in ("mom1", "mom2"):
        table = getattr(optimizer, attr)
        state[attr] = {to_stable[k]: torch.from_numpy(np.array(_np(v), dtype=np.float32)) for k, v in table.items() if k in to_stable}
    for attr in ("nr_update", "last_seen"):
        state[attr] = {to_stable[k]: int(v) for k, v in getattr(optimizer, attr).items() if k in to_stable}
    return state


def _np(array: Any) -> Any:
    return array.get() if hasattr(array, "get") else array


def restore_optimizer(optimizer: Optimizer, state: Dict[str, Any], nlp: Language, names: List[str]) -> None:
    _, from_stable = _stable_keys(nlp, names)
    missing = [key for key in state.get("mom1", {}) if key not in from_stable]
    if missing:
        raise DistillError(f"The checkpoint's optimizer state does not fit the student (e.g. {missing[0]}); delete {CHECKPOINT} to start again.")
    from thinc.api import get_current_ops

    ops = get_current_ops()
    for attr in ("mom1", "mom2"):
        table = getattr(optimizer, attr)
        for key, value in state.get(attr, {}).items():
            table[from_stable[key]] = ops.asarray(value.numpy())
    for attr in ("nr_update", "last_seen"):
        table = getattr(optimizer, attr)
        for key, value in state.get(attr, {}).items():
            table[from_stable[key]] = int(value)


# -- evaluation -------------------------------------------------------------------------------
def dev_score(nlp: Language, examples: List[Example]) -> Tuple[float, Dict[str, Any]]:
    """spaCy's weighted main score of ``nlp`` on ``examples`` (the pipeline's
    ``[training.score_weights]``, or its components' defaults), and the scores."""
    scores = nlp.evaluate(examples)
    weights: Dict[str, Any] = dict(nlp.config.get("training", {}).get("score_weights") or {})
    if not any(weights.values()):
        weights = combine_score_weights([dict(nlp.get_pipe_meta(n).default_score_weights or {}) for n in nlp.pipe_names])
    total = sum(float(w) * float(scores[k]) for k, w in weights.items() if w and isinstance(scores.get(k), (int, float)))
    return total, scores


def agreement(teacher: Language, student: Language, texts: List[str]) -> float:
    """Share of the distilled outputs on which the student predicts as the teacher does:
    token tags (tagger), BILUO tags (NER), the best category (textcat)."""
    same = total = 0
    t_docs, s_docs = list(teacher.pipe(texts)), list(student.pipe(texts))
    for name in distilled_heads(teacher):
        pipe = component(teacher, name)
        for t, s in zip(t_docs, s_docs):
            if isinstance(pipe, ElectraTextCat):
                same += int(_best(t.cats) == _best(s.cats))
                total += 1
            elif pipe.cfg.get("attr") in ("tag", "pos"):
                attr = "tag_" if pipe.cfg["attr"] == "tag" else "pos_"
                same += sum(getattr(a, attr) == getattr(b, attr) for a, b in zip(t, s))
                total += len(t)
            else:
                same += sum((a.ent_iob_, a.ent_type_) == (b.ent_iob_, b.ent_type_) for a, b in zip(t, s))
                total += len(t)
    return same / max(total, 1)


def _best(cats: Dict[str, float]) -> Optional[str]:
    return max(cats, key=lambda label: cats[label]) if cats else None


# -- the run ----------------------------------------------------------------------------------
def check_existing_student(teacher: Language, student: Language, source: Path) -> None:
    expected, found = labels_of(teacher), labels_of(student)
    if expected != found:
        differ = sorted(set(expected) ^ set(found)) or [n for n in expected if expected[n] != found.get(n)]
        raise DistillError(
            f"The student in {source} has other components or labels than the teacher ({', '.join(differ)}); "
            "use a new output folder for this teacher."
        )


def run_identity(config: DistillConfig) -> str:
    """The settings a resumed run must share with the run it continues: all but the length of
    the run and its bookkeeping (an extended ``max_steps`` continues the same run)."""
    data = config.to_dict()
    for key in ("max_steps", "eval_every", "checkpoint_every", "progress_bar"):
        del data["training"][key]
    return json.dumps(data, sort_keys=True)


def _write_pipeline(nlp: Language, path: Path, teacher: Language, step: int, scores: Optional[Dict[str, Any]]) -> None:
    """Save ``nlp`` atomically; its meta says what it was distilled from, and its
    ``performance`` is its own dev scores (none without a dev set), not the teacher's."""
    nlp.meta["performance"] = {k: v for k, v in (scores or {}).items() if v is not None}
    nlp.meta["distill"] = {
        "teacher": f"{teacher.meta.get('lang', '')}_{teacher.meta.get('name', '')}-{teacher.meta.get('version', '')}",
        "step": step,
        "encoders": {name: {"layers": n, "hidden_size": h} for name, (n, h) in encoder_sizes(nlp).items()},
    }
    with atomic_folder(path) as tmp:
        nlp.to_disk(tmp)


def _save_checkpoint(
    output: Path, student: Language, optimizer: Optimizer, step: int, best: Optional[float], config: DistillConfig,
    teacher: Path, layer_maps: Dict[str, List[int]],
) -> None:
    names = trained_components(student)
    with atomic_folder(output / CHECKPOINT) as tmp:
        student.to_disk(tmp / "student")
        torch.save(
            {"step": step, "best": best, "optimizer": optimizer_state(optimizer, student, names),
             "config": run_identity(config), "teacher": str(teacher), "layer_maps": layer_maps},
            tmp / STATE,
        )


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log lines of steps after ``step`` (an interrupted run's, which a resumed run
    takes again), so the log has each step once."""
    if not path.exists():
        return
    lines = [line for line in path.read_text(encoding="utf8").splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if kept != lines:
        with atomic_file(path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf8")


def distill(
    teacher_path: Union[str, Path],
    output: Union[str, Path],
    corpus: Union[str, Path],
    config: Optional[DistillConfig] = None,
    *,
    dev: Union[str, Path, None] = None,
    on_step: Optional[Callable[[int, Dict[str, float]], None]] = None,
) -> Dict[str, Any]:
    """Distill the pipeline at ``teacher_path`` into a smaller student under ``output`` (see the
    module docstring); continues from ``output/checkpoints/last`` when it exists. Every input
    is checked before anything is written. ``on_step(step, losses)`` is called after each step.
    Returns ``{"step", "best", "losses", "layers"}``."""
    config = config or DistillConfig()
    t = config.training
    teacher_path, output = Path(teacher_path), Path(output)
    teacher = load_teacher(teacher_path)
    check_listeners(teacher)
    resume = (output / CHECKPOINT / STATE).is_file()
    state: Dict[str, Any] = {}
    if resume:
        state = read_training_state(output / CHECKPOINT / STATE, torch.device("cpu"))
        student = spacy.load(output / CHECKPOINT / "student")
        check_existing_student(teacher, student, output / CHECKPOINT)
        if state.get("config") != run_identity(config):
            raise DistillError(
                f"{output} holds a distillation with other settings; rerun with the same settings to continue "
                "(training.max_steps, eval_every, checkpoint_every and progress_bar may change), or use a new output folder."
            )
        picked: Dict[str, List[int]] = {k: [int(i) for i in v] for k, v in dict(state.get("layer_maps") or {}).items()}
    else:
        student, picked = build_student(teacher_path, config.student)
    train = read_corpus(student, corpus, t.max_docs)
    dev_examples = read_corpus(student, dev) if dev is not None else None
    if dev_examples is not None and not any(has_gold(eg) for eg in dev_examples):
        raise DistillError(f"Dev set {dev} has no gold annotations to score; give a .spacy file with them.")

    optimizer = make_optimizer(config)
    names = trained_components(student)
    step, best = 0, None
    if resume:
        restore_optimizer(optimizer, state["optimizer"], student, names)
        step, best = int(state["step"]), state.get("best")
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / "distill_log.jsonl"
    _truncate_log(log_path, step)
    bar = None
    if t.progress_bar:
        from tqdm import tqdm

        bar = tqdm(total=t.max_steps, initial=step, unit="step", dynamic_ncols=True, mininterval=2.0)
    losses: Dict[str, float] = {}
    scores: Optional[Dict[str, Any]] = None
    try:
        while step < t.max_steps:
            fix_random_seed(t.seed + step)
            batch = [train[i] for i in batch_indices(len(train), min(t.batch_size, len(train)), t.seed, step)]
            optimizer.learn_rate = learn_rate_at(config, step)
            losses = train_step(student, teacher, batch, optimizer, config, picked)
            step += 1
            record: Dict[str, Any] = {"step": step, "loss": losses}
            if dev_examples is not None and (step % t.eval_every == 0 or step == t.max_steps):
                score, scores = dev_score(student, dev_examples)
                record["dev_score"] = score
                if best is None or score > best:
                    best = score
                    _write_pipeline(student, output / "model-best", teacher, step, scores)
            if step % t.checkpoint_every == 0 or step == t.max_steps:
                _save_checkpoint(output, student, optimizer, step, best, config, teacher_path, picked)
            with log_path.open("a", encoding="utf8") as log:
                log.write(json.dumps(record, sort_keys=True) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses.values()):.3f}", **({"dev": f"{best:.3f}"} if best is not None else {}))
            if on_step is not None:
                on_step(step, losses)
    finally:
        if bar is not None:
            bar.close()
    _write_pipeline(student, output / "model-last", teacher, step, scores)
    sizes = encoder_sizes(student)
    return {"step": step, "best": best, "losses": losses, "layers": picked, "sizes": sizes}
