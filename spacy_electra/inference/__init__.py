"""Switch a loaded pipeline's ELECTRA encoders to another inference backend at run time.

    nlp = spacy.load("my_pipeline")
    set_inference(nlp, "onnx-int8")   # or "fp32", "bf16", "int8", "onnx"

Finds every ``WindowedEncoder`` wherever it sits: a shared ``electra_transformer`` component,
or an encoder inside a task component's own model (``electra_ner`` with its own
``ElectraTransformer.v1`` tok2vec). Only inference changes; training still runs fp32 torch, and
the saved weights stay the fp32 ones (see ``model/backends.py``).
"""
from __future__ import annotations

from typing import Dict, Iterator, Tuple

from spacy.language import Language
from thinc.api import Model

from ..torch_model.windowed import WindowedEncoder
from .backends import INFERENCE_KINDS, apply_inference, check_kind

__all__ = ["INFERENCE_KINDS", "find_encoders", "set_inference"]


def find_encoders(nlp: Language) -> Iterator[Tuple[str, WindowedEncoder]]:
    """(component name, encoder) for every initialised ELECTRA encoder, each once."""
    seen = set()
    for name, pipe in nlp.components:
        model = getattr(pipe, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            for shim in node.shims:
                module = getattr(shim, "module", None)
                if isinstance(module, WindowedEncoder) and id(module) not in seen:
                    seen.add(id(module))
                    yield name, module


def set_inference(nlp: Language, kind: str) -> Dict[str, str]:
    """Apply ``kind`` to every encoder of ``nlp``; returns {component: kind in effect} (fp32
    where the backend is unavailable here, after a warning)."""
    check_kind(kind)
    applied = {name: apply_inference(module, kind) for name, module in find_encoders(nlp)}
    if not applied:
        raise ValueError(
            f"No initialised ELECTRA encoder in the pipeline ({', '.join(nlp.pipe_names) or 'no components'}); "
            "load a trained pipeline or run nlp.initialize() first."
        )
    return applied
