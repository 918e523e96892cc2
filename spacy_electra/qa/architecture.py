"""``spacy_electra.SpanQA.v1``: question-context rows in, start/end logits per row out.

The question and the context are encoded together (``[CLS] question [SEP] window [SEP]``), so
the component owns its encoder: a shared ``electra_transformer`` encodes the context alone and
cannot serve extractive QA. The torch module runs through ``ElectraShim`` (layer-wise learning
rate decay; dropout passed per call, so concurrent ``predict`` calls never turn dropout on for
each other, and a forked ``n_process`` worker runs torch single-threaded).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, cast

import numpy as np
import torch
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d, Floats3d

from ..layers.loaders import read_for
from ..layers.shim import electra_shim, make_shim
from .features import QATask, Row, batch_rows, make_rows, window_size
from .module import SpanQAModule, deserialize_span_qa, serialize_span_qa

RowLogits = Tuple[List[Row], List[Floats2d]]  # the rows built for the tasks, (length, 2) logits each
SpanQAModel = Model[List[QATask], RowLogits]

DEFAULT_CHECKPOINT = "google/electra-small-discriminator"


@registry.architectures("spacy_electra.SpanQA.v1")
def SpanQA_v1(
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    max_length: int = 384,
    max_query_pieces: int = 64,
    doc_stride: int = 128,
    max_batch_items: int = 8192,
    layer_lr_decay: float = 1.0,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
) -> SpanQAModel:
    """An ELECTRA encoder with a start/end layer over question-window rows (BERT's SQuAD
    defaults: 384 pieces per row, questions cut at 64 pieces, a window every 128 context
    pieces). ``checkpoint`` is read at ``initialize``: a fine-tuned HF
    ``ElectraForQuestionAnswering`` folder brings its ``qa_outputs``; any other ELECTRA folder
    gets a freshly initialised one."""
    if max_query_pieces < 1:
        raise ValueError(f"max_query_pieces={max_query_pieces} must be at least 1.")
    if window_size(max_length, max_query_pieces) < 1:
        raise ValueError(
            f"max_length={max_length} leaves no room for context after a question of max_query_pieces="
            f"{max_query_pieces} pieces and [CLS]/[SEP]/[SEP]; raise max_length or lower max_query_pieces."
        )
    if doc_stride < 1:
        raise ValueError(f"doc_stride={doc_stride} must be at least 1 piece.")
    if max_batch_items < max_length:
        raise ValueError(f"max_batch_items={max_batch_items} cannot hold one row of max_length={max_length}; raise it.")
    shim = make_shim(
        serialize_span_qa, deserialize_span_qa, layer_lr_decay=layer_lr_decay,
        mixed_precision=mixed_precision, grad_scaler_config=grad_scaler_config,
    )
    return Model(
        "electra_span_qa",
        forward,
        init=init,
        shims=[shim],
        attrs={
            "checkpoint": str(checkpoint),
            "max_length": max_length,
            "max_query_pieces": max_query_pieces,
            "doc_stride": doc_stride,
            "max_batch_items": max_batch_items,
        },
    )


def get_module(model: SpanQAModel) -> SpanQAModule:
    module = electra_shim(model).module
    if module is None:
        raise ValueError(
            "electra_span_qa is not initialized: run nlp.initialize() (or `spacy train`), or load a trained pipeline with spacy.load()."
        )
    return module


def set_module(model: SpanQAModel, module: SpanQAModule) -> None:
    electra_shim(model).module = module


def init(model: SpanQAModel, X=None, Y=None) -> SpanQAModel:
    checkpoint = read_for(model, "[components.electra_span_qa.model]", taken=("qa_outputs",))
    encoder = checkpoint.build("encoder")
    # An exported electra_span_qa (or an HF folder that records it) carries its no-answer threshold.
    model.attrs["checkpoint_null_threshold"] = checkpoint.raw_config.get("null_score_diff_threshold")
    if encoder.config.max_position_embeddings < model.attrs["max_length"]:
        raise ValueError(
            f"max_length={model.attrs['max_length']} exceeds max_position_embeddings="
            f"{encoder.config.max_position_embeddings} of {checkpoint.directory}; lower max_length."
        )
    head = checkpoint.heads.get("qa_outputs")
    wordpiece = checkpoint.require_vocab()
    set_module(model, SpanQAModule(encoder, wordpiece, head))
    return model


def forward(model: SpanQAModel, tasks: List[QATask], is_train: bool):
    module = get_module(model)
    wp = module.wordpiece
    rows = make_rows(tasks, max_length=model.attrs["max_length"], doc_stride=model.attrs["doc_stride"])
    chunks = batch_rows(
        rows, tasks, max_batch_items=model.attrs["max_batch_items"], cls_id=wp.cls_id, sep_id=wp.sep_id, pad_id=wp.pad_id
    )
    if not chunks:
        return (rows, []), lambda d_logits: tasks
    shim = electra_shim(model)
    device = shim.device
    to_torch = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    inputs = ArgsKwargs(
        args=([(to_torch(c.ids), to_torch(c.types), to_torch(c.mask)) for c in chunks],), kwargs={"dropout": is_train}
    )
    outputs, backprop_torch = shim(inputs, is_train)
    logits: List[Optional[Floats2d]] = [None] * len(rows)
    for chunk, output in zip(chunks, outputs):
        array = cast(Floats3d, torch2xp(output))
        for b, r in enumerate(chunk.rows):
            logits[r] = array[b, : rows[r].length]

    def backprop(d_logits: List[Floats2d]) -> List[QATask]:
        grads = []
        for chunk, output in zip(chunks, outputs):
            grad = model.ops.alloc3f(*output.shape)
            for b, r in enumerate(chunk.rows):
                grad[b, : rows[r].length] = cast(Floats2d, model.ops.asarray(d_logits[r]))
            grads.append(xp2torch(grad, device=device))
        backprop_torch(ArgsKwargs(args=(outputs,), kwargs={"grad_tensors": tuple(grads)}))
        return tasks

    return (rows, logits), backprop


def encode_tasks(
    model: SpanQAModel, contexts: List[List[str]], questions: List[List[str]]
) -> Tuple[List[List[QATask]], List[int]]:
    """Tasks per context (its token texts) and question; returns them with the piece count of
    every question before truncation to ``max_query_pieces`` (so callers can warn)."""
    wp = get_module(model).wordpiece
    limit = model.attrs["max_query_pieces"]
    pieces = wp.encode_batch(contexts)
    flat = [q for qs in questions for q in qs]
    query_ids = wp.encode_texts(flat) if flat else []
    tasks, lengths, k = [], [], 0
    for context, qs in zip(pieces, questions):
        doc_tasks = []
        for _ in qs:
            ids = np.asarray(query_ids[k], dtype=np.int32)
            lengths.append(len(ids))
            doc_tasks.append(QATask(context, ids[:limit]))
            k += 1
        tasks.append(doc_tasks)
    return tasks, lengths
