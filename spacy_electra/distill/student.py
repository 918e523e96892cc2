"""Build a student pipeline from a teacher: the same config, components and labels, with every
ELECTRA encoder replaced by a smaller one.

* Distillable components: ``electra_tagger``, ``electra_ner``, ``electra_textcat`` and
  ``electra_textcat_multilabel``, each with its own encoder or listening to a shared
  ``electra_transformer``. Any other component is kept as the teacher has it and not trained;
  one that listens to a distilled ``electra_transformer`` is refused (its input would change
  under it).
* Layers: student layer j (1-based) of k starts from teacher layer j * L / k (1-based, rounded
  half up) of L, so the layers are evenly spaced and the last is the teacher's top layer: 6 -> 3
  takes teacher layers [1, 3, 5] (0-based), 12 -> 4 takes [2, 5, 8, 11], any L -> 1 the top one.
  ``student.layer_map`` names them explicitly. The embeddings (and, at the teacher's width,
  their projection) are copied.
* A narrower ``hidden_size``: the embeddings are still copied (they keep ``embedding_size``);
  the projection to the new width, the transformer layers and every head layer that reads the
  encoder (output layers, [CLS] dense layer) start fresh, drawn as a new ELECTRA encoder and a
  new Thinc layer would be. ``intermediate_size`` shrinks in proportion; the attention heads
  stay as many as the teacher's where the width divides, else the largest count that does.
* At the teacher's width the heads are the teacher's (copied with the pipeline).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import spacy
import torch
from spacy.language import Language
from spacy_transformers.layers.listener import TransformerListener
from thinc.api import Gelu, Linear, Model

from ..layers.shim import ElectraShim
from ..layers.torch_encoder import get_encoder, set_encoder
from ..pipes.heads import ElectraHead
from ..pipes.transformer import ElectraTransformer
from ..torch_model import ElectraConfig
from ..torch_model.encoder import ElectraEncoder
from ..torch_model.windowed import WindowedEncoder
from .config import DistillError, StudentSettings

DISTILLABLE = ("electra_tagger", "electra_ner", "electra_textcat", "electra_textcat_multilabel")


def pick_layers(n_teacher: int, n_student: int) -> List[int]:
    """0-based teacher layers for the student's layers: evenly spaced, ending at the top one
    (student layer j of k, 1-based, takes teacher layer j * L / k rounded half up)."""
    return [(2 * (j + 1) * n_teacher + n_student) // (2 * n_student) - 1 for j in range(n_student)]


def load_teacher(path: Union[str, Path]) -> Language:
    path = Path(path)
    if not (path / "config.cfg").is_file() or not (path / "meta.json").is_file():
        raise DistillError(f"Teacher {path} is not a trained spaCy pipeline folder (config.cfg + meta.json).")
    nlp = spacy.load(path)
    if not distilled_heads(nlp):
        found = ", ".join(f"{name} ({pipe_factory(nlp, name)})" for name in nlp.pipe_names) or "no components"
        raise DistillError(
            f"Teacher {path} has no component to distill ({found}); distill needs at least one of {', '.join(DISTILLABLE)}."
        )
    return nlp


def component(nlp: Language, name: str) -> Any:
    """``nlp.get_pipe(name)``, typed for the attributes of our components."""
    return nlp.get_pipe(name)


def pipe_factory(nlp: Language, name: str) -> str:
    return nlp.get_pipe_meta(name).factory


def distilled_heads(nlp: Language) -> List[str]:
    """Names of the components that are distilled (see the module docstring)."""
    return [name for name, pipe in nlp.pipeline if isinstance(pipe, ElectraHead) and pipe_factory(nlp, name) in DISTILLABLE]


def trained_components(nlp: Language) -> List[str]:
    """The distilled heads and the ``electra_transformer`` components they listen to."""
    heads = set(distilled_heads(nlp))
    out = []
    for name, pipe in nlp.pipeline:
        if name in heads or (isinstance(pipe, ElectraTransformer) and set(pipe.listening_components) & heads):
            out.append(name)
    return out


def labels_of(nlp: Language) -> Dict[str, Tuple[str, ...]]:
    return {name: tuple(component(nlp, name).labels) for name in distilled_heads(nlp)}


def encoder_sizes(nlp: Language) -> Dict[str, Tuple[int, int]]:
    """(layers, hidden size) of the encoder of each trained component that owns one."""
    out = {}
    for name in trained_components(nlp):
        module = own_encoder(component(nlp, name).model)
        if module is not None:
            out[name] = (module.config.num_hidden_layers, module.config.hidden_size)
    return out


def own_encoder(model: Model) -> Optional[WindowedEncoder]:
    for node in model.walk():
        if node.shims and isinstance(node.shims[0], ElectraShim) and "all_layers" in node.attrs:
            return get_encoder(node)
    return None


def check_listeners(nlp: Language) -> None:
    heads = set(distilled_heads(nlp))
    for name in trained_components(nlp):
        pipe = component(nlp, name)
        if isinstance(pipe, ElectraTransformer):
            others = [c for c in pipe.listening_components if c not in heads]
            if others:
                raise DistillError(
                    f"Component(s) {', '.join(others)} listen to {name!r} but cannot be distilled; give them their own "
                    "encoder first (nlp.replace_listeners) or remove them from the teacher."
                )


def student_config(teacher: ElectraConfig, settings: StudentSettings) -> ElectraConfig:
    """The student encoder's shape (see the module docstring), or a DistillError when it is
    not smaller than or equal to the teacher's."""
    layers = settings.layers
    hidden = settings.hidden_size or teacher.hidden_size
    if layers > teacher.num_hidden_layers or hidden > teacher.hidden_size:
        raise DistillError(
            f"The student ({layers} layers, hidden {hidden}) is larger than the teacher ({teacher.num_hidden_layers} "
            f"layers, hidden {teacher.hidden_size}); choose at most the teacher's --layers and --hidden-size."
        )
    heads = teacher.num_attention_heads
    while hidden % heads:
        heads -= 1
    intermediate = max(1, round(teacher.intermediate_size * hidden / teacher.hidden_size))
    return dataclasses.replace(
        teacher, num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
        intermediate_size=intermediate, extra=dict(teacher.extra),
    )


def small_encoder(teacher: WindowedEncoder, settings: StudentSettings) -> Tuple[WindowedEncoder, List[int]]:
    """A ``WindowedEncoder`` of the student's shape, initialised from ``teacher`` as the module
    docstring says; returns it and the teacher layers it started from."""
    t_cfg = teacher.config
    cfg = student_config(t_cfg, settings)
    layer_map = list(settings.layer_map) if settings.layer_map is not None else pick_layers(t_cfg.num_hidden_layers, cfg.num_hidden_layers)
    bad = [i for i in layer_map if not 0 <= i < t_cfg.num_hidden_layers]
    if bad:
        raise DistillError(f"student.layer_map {layer_map}: the teacher has layers 0 to {t_cfg.num_hidden_layers - 1}.")
    source = teacher.encoder
    encoder = ElectraEncoder(cfg)
    with torch.no_grad():
        encoder.embeddings.load_state_dict(source.embeddings.state_dict())
        if cfg.hidden_size == t_cfg.hidden_size:
            if source.projection is not None and encoder.projection is not None:
                encoder.projection.load_state_dict(source.projection.state_dict())
            for j, i in enumerate(layer_map):
                encoder.layers[j].load_state_dict(source.layers[i].state_dict())
    return WindowedEncoder(encoder, teacher.wordpiece), layer_map


def build_student(teacher_path: Union[str, Path], settings: StudentSettings) -> Tuple[Language, Dict[str, List[int]]]:
    """A fresh copy of the teacher pipeline with smaller encoders; returns it and, per
    component that owns an encoder, the teacher layers its student layers started from."""
    student = spacy.load(teacher_path)
    check_listeners(student)
    picked: Dict[str, List[int]] = {}
    for name in trained_components(student):
        model = component(student, name).model
        teacher_module = own_encoder(model)
        if teacher_module is None:
            continue
        module, layer_map = small_encoder(teacher_module, settings)
        set_encoder(model, module)
        picked[name] = layer_map
        if module.config.hidden_size != teacher_module.config.hidden_size:
            _refit_widths(student, name, module.config.hidden_size)
    return student, picked


def _head_models(nlp: Language, encoder_owner: str) -> Iterator[Model]:
    """The models of the heads that read the encoder of ``encoder_owner``."""
    pipe = component(nlp, encoder_owner)
    if isinstance(pipe, ElectraTransformer):
        for name in pipe.listening_components:
            yield component(nlp, name).model
    else:
        yield pipe.model


def _refit_widths(nlp: Language, encoder_owner: str, width: int) -> None:
    """Every head layer that reads the encoder gets the new width and fresh weights (a new
    layer in its place: Thinc keeps a layer's dimensions once it has weights)."""
    for model in _head_models(nlp, encoder_owner):
        for node in model.walk():
            if isinstance(node, TransformerListener) or node.name == "electra_pool_tokens":
                node.set_dim("nO", width, force=True)
        if model.has_ref("dense"):
            _replace(model, "dense", Gelu(nO=width, nI=width))
        output = model.get_ref("output_layer")
        _replace(model, "output_layer", Linear(nO=output.get_dim("nO"), nI=width))


def _replace(model: Model, ref: str, new: Model) -> None:
    old = model.get_ref(ref)
    new.initialize()
    nodes = list(model.walk())
    for node in nodes:
        node.layers[:] = [new if layer is old else layer for layer in node.layers]
    for node in model.walk():
        for name in node.ref_names:
            if node.has_ref(name) and node.get_ref(name) is old:
                node.set_ref(name, new)
