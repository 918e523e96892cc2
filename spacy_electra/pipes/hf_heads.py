"""Fine-tuned Hugging Face heads in and out of the task components.

In: when the own encoder of ``electra_ner``, ``electra_tagger`` or ``electra_textcat(_multilabel)``
reads a checkpoint whose ``architectures`` is ``ElectraForTokenClassification`` or
``ElectraForSequenceClassification``, ``initialize`` takes the head's weights and its label set
(``id2label``) instead of starting a new output layer. Out: ``export_head`` writes a trained
component as such a folder, which ``transformers`` loads with no missing keys and equal logits.

The layers mean the same thing on both sides, so weights are copied, never retrained:

- token classification: HF applies ``classifier`` (dropout, linear) to every piece; our
  ``TokenClassifier`` applies the same linear layer to each token's *first* piece (``pooling =
  "first"``), HF's convention for word-level labels.
- sequence classification: HF's ``ElectraClassificationHead`` is dropout, dense (H -> H), exact
  (erf) GELU, dropout, ``out_proj`` on the [CLS] vector: that is ``DocClassifier``, whose thinc
  ``Gelu`` is also x * Phi(x) with erf (not the tanh approximation).

Both are equal on the same pieces, i.e. for a doc that fits one window of the encoder; a longer
doc is seen by overlapping windows (averaged piece vectors, mean [CLS]) where HF truncates.

NER labels: HF token classifiers use BIO (IOB2) tags, sometimes BILUO or BIOES. Our NER scores
the BILUO tags of its entity types (``biluo_tags``: O, then B/I/L/U per type). Each of our rows
copies one HF row: O <- O, B-X <- B-X, I-X <- I-X, L-X <- L-X (or E-X, else I-X), U-X <- U-X
(or S-X, else B-X). A copied row gives the same logit, and a BILUO path then scores the sum of
the HF logits of its BIO reading, so when HF's per-token argmax is a valid BIO sequence our
constrained decoding returns exactly its entities; when it is not (an I-X after O), ours returns
the best-scoring valid sequence instead. Export writes our rows under their BILUO names
(``id2label`` = O, B-X, I-X, L-X, U-X...), so the logits stay equal; read them as BILUO.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch
from spacy.language import Language
from thinc.api import Model
from thinc.types import FloatsXd

from ..checkpoint import Checkpoint, CheckpointError, save_checkpoint
from ..checkpoint.reader import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION
from ..decoding import biluo_tags
from ..layers.loaders import read_for
from ..layers.torch_encoder import encoder_node, get_encoder

MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"
NER_TAG = re.compile(r"([BILUES])-(.+)")

Params = Dict[str, Dict[str, np.ndarray]]  # model ref ("output_layer", "dense") -> {"W", "b"}


class HeadImportError(CheckpointError):
    """A fine-tuned head that cannot become this component (wrong kind, labels or shapes); a
    ``CheckpointError``, so the command line reports it in one line."""


@dataclass
class FineTunedHead:
    """What a checkpoint's ``classifier.*`` tensors and config.json say, before conversion."""

    source: str  # the checkpoint, for messages
    architecture: str
    labels: List[str]  # id2label, in row order
    problem_type: Optional[str]
    tensors: Dict[str, np.ndarray]  # HF names under classifier., prefix stripped


@dataclass
class ImportedHead:
    """A head converted for one component: its labels and its layers' weights."""

    labels: List[str]
    params: Params


def own_encoder(model: Model) -> Optional[Model]:
    return next((node for node in model.walk() if node.name == "electra_transformer"), None)


def read_own_checkpoint(model: Model, section: str) -> Optional[Checkpoint]:
    """The checkpoint of ``model``'s own encoder, read once (``None`` when the model listens
    to a shared encoder): the head takes its fine-tuned classifier from it, then lends it to
    the encoder's initialisation. The encoder's loader warns about the heads nobody takes."""
    encoder = own_encoder(model)
    if encoder is None:
        return None
    return read_for(encoder_node(encoder), section, taken=("classifier",))


def fine_tuned_head(checkpoint: Checkpoint) -> Optional[FineTunedHead]:
    """The fine-tuned classification head of ``checkpoint``; ``None`` when it has none (e.g. a
    pretrained discriminator). Its shapes were checked when the checkpoint was read."""
    architecture = next((a for a in checkpoint.architectures if a in (TOKEN_CLASSIFICATION, SEQUENCE_CLASSIFICATION)), None)
    if architecture is None:
        return None
    tensors = {name: tensor.numpy() for name, tensor in checkpoint.heads.get("classifier", {}).items()}
    rows = tensors.get("weight" if architecture == TOKEN_CLASSIFICATION else "out_proj.weight")
    if rows is None:
        raise HeadImportError(
            f"{checkpoint.directory} says {architecture} but has no classifier weights of that layout; export the fine-tuned model again."
        )
    raw = checkpoint.raw_config
    return FineTunedHead(str(checkpoint.directory), architecture, _id2label(raw, rows.shape[0], checkpoint.directory), raw.get("problem_type"), tensors)


def _id2label(raw: dict, n_rows: int, directory: Path) -> List[str]:
    mapping = raw.get("id2label") or {}
    try:
        labels = {int(i): str(label) for i, label in mapping.items()}
    except (TypeError, ValueError, AttributeError):
        raise HeadImportError(f"{directory / 'config.json'}: id2label must map row numbers to label names.") from None
    if sorted(labels) != list(range(n_rows)):
        raise HeadImportError(
            f"{directory / 'config.json'}: id2label names {len(labels)} labels but the classifier has {n_rows} "
            "rows; id2label needs one label per row (0..n-1): use the config.json that belongs to these weights."
        )
    names = [labels[i] for i in range(n_rows)]
    if len(set(names)) != n_rows:
        raise HeadImportError(f"{directory / 'config.json'}: id2label repeats a label ({', '.join(names)}); each row needs its own.")
    return names


def _expect(head: FineTunedHead, architecture: str, component: str, instead: str) -> None:
    if head.architecture != architecture:
        raise HeadImportError(
            f"{head.source} holds an {head.architecture} head, which {component} cannot use: load it "
            f"into {instead}, or give {component} a checkpoint without a fine-tuned head (e.g. the "
            "pretrained discriminator) to train a new one."
        )


def tagger_head(head: FineTunedHead) -> ImportedHead:
    """id2label are the tags, row for row."""
    _expect(head, TOKEN_CLASSIFICATION, "electra_tagger", "electra_textcat or electra_textcat_multilabel")
    return ImportedHead(list(head.labels), {"output_layer": {"W": head.tensors["weight"], "b": head.tensors["bias"]}})


def ner_head(head: FineTunedHead) -> ImportedHead:
    """Entity types from BIO / BILUO / BIOES tags; each BILUO row copies one HF row (module docstring)."""
    _expect(head, TOKEN_CLASSIFICATION, "electra_ner", "electra_textcat or electra_textcat_multilabel")
    rows: Dict[str, int] = {}
    types: List[str] = []
    plain = []
    for i, label in enumerate(head.labels):
        match = NER_TAG.fullmatch(label)
        if label == "O":
            rows["O"] = i
        elif match:
            prefix, kind = match.groups()
            rows[f"{prefix}-{kind}"] = i
            if kind not in types:
                types.append(kind)
        else:
            plain.append(label)
    if plain or "O" not in rows:
        problem = f"labels {', '.join(plain)} are not" if plain else "there is no O label: they are not"
        raise HeadImportError(
            f"{head.source}: id2label ({', '.join(head.labels)}) is not an entity tag set ({problem} BIO/BILUO "
            "tags like O, B-PER, I-PER). electra_ner needs such tags; for plain per-token labels use electra_tagger."
        )
    fallbacks = {"B": ("B",), "I": ("I",), "L": ("L", "E", "I"), "U": ("U", "S", "B")}
    source_rows = []
    for tag in biluo_tags(types):
        if tag == "O":
            source_rows.append(rows["O"])
            continue
        prefix, kind = tag.split("-", 1)
        found = next((rows[f"{p}-{kind}"] for p in fallbacks[prefix] if f"{p}-{kind}" in rows), None)
        if found is None:
            raise HeadImportError(
                f"{head.source}: entity type {kind!r} has no {' or '.join(p + '-' + kind for p in fallbacks[prefix])} "
                f"label in id2label ({', '.join(head.labels)}); electra_ner needs B- and I- tags for every type."
            )
        source_rows.append(found)
    index = np.asarray(source_rows)
    return ImportedHead(types, {"output_layer": {"W": head.tensors["weight"][index], "b": head.tensors["bias"][index]}})


def textcat_head(head: FineTunedHead, multi_label: bool) -> ImportedHead:
    """id2label are the classes. ``problem_type`` must match: softmax logits thresholded as
    sigmoids (or the reverse) would mean something else. A config without one is read as
    single-label, as HF's own loss does for class ids."""
    name = "electra_textcat_multilabel" if multi_label else "electra_textcat"
    _expect(head, SEQUENCE_CLASSIFICATION, name, "electra_ner or electra_tagger")
    problem = head.problem_type or SINGLE_LABEL
    if problem not in (SINGLE_LABEL, MULTI_LABEL) or len(head.labels) < 2 and problem == SINGLE_LABEL:
        raise HeadImportError(
            f"{head.source} is a {problem if head.problem_type else 'regression'} head with {len(head.labels)} "
            "output(s); electra_textcat needs single_label_classification and electra_textcat_multilabel "
            "multi_label_classification (set problem_type in its config.json if that is what it was trained as)."
        )
    if (problem == MULTI_LABEL) != multi_label:
        other = "electra_textcat_multilabel" if problem == MULTI_LABEL else "electra_textcat"
        raise HeadImportError(
            f"{head.source} has problem_type {problem!r}{'' if head.problem_type else ' (the default)'}, "
            f"which {name} cannot use: load it into {other}."
        )
    t = head.tensors
    return ImportedHead(
        list(head.labels),
        {"dense": {"W": t["dense.weight"], "b": t["dense.bias"]}, "output_layer": {"W": t["out_proj.weight"], "b": t["out_proj.bias"]}},
    )


def check_pooling(model: Model, head: FineTunedHead) -> None:
    """A token head was trained on each word's first piece; other pooling would feed it other vectors."""
    pools = [node.attrs["pooling"] for node in model.walk() if node.name == "electra_pool_tokens"]
    if head.architecture == TOKEN_CLASSIFICATION and pools != ["first"]:
        raise HeadImportError(
            f"{head.source} holds a token classifier trained on each word's first piece, but the component pools "
            f"pieces with {', '.join(pools) or 'another pooling'}: set pooling = \"first\" in its model config."
        )


def check_labels(component: str, source: str, head_labels: Sequence[str], wanted: Sequence[str]) -> None:
    unknown = sorted(set(wanted) - set(head_labels))
    if unknown:
        raise HeadImportError(
            f"{component!r}: label(s) {', '.join(unknown)} (given or in the training data) are not among the "
            f"labels of the fine-tuned head in {source} ({', '.join(head_labels)}). Train on its labels only, "
            "or use a checkpoint without a fine-tuned head (e.g. the pretrained discriminator) for a new label set."
        )


def size_for(model: Model, imported: ImportedHead) -> None:
    """Set the widths of the layers that take the head's weights, before ``model.initialize``
    (which may see no data to infer them from)."""
    for ref, params in imported.params.items():
        layer = model.get_ref(ref)
        n_out, n_in = params["W"].shape
        layer.set_dim("nO", n_out, force=True)
        layer.set_dim("nI", n_in, force=True)


def load_into(model: Model, imported: ImportedHead) -> None:
    for ref, params in imported.params.items():
        layer = model.get_ref(ref)
        for name, value in params.items():
            weights: Any = np.ascontiguousarray(value, dtype="float32")
            layer.set_param(name, cast(FloatsXd, layer.ops.asarray(weights)))


# -- export ------------------------------------------------------------------------------------
def exported_head(component) -> Tuple[str, List[str], Dict[str, torch.Tensor], Dict[str, object]]:
    """(architecture, id2label names, HF head tensors, extra config) of a trained component."""
    model = component.model
    layers = {ref: model.get_ref(ref) for ref in ("dense", "output_layer") if model.has_ref(ref)}

    def tensor(layer: Model, name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(model.ops.to_numpy(layer.get_param(name)), dtype="float32"))

    out = layers["output_layer"]
    if hasattr(component, "multi_label"):  # electra_textcat(_multilabel)
        if "dense" not in layers:
            raise ValueError(
                f"{component.name!r} does not use DocClassifier (dense -> GELU -> output), the layout "
                "of HF's classification head, so it cannot be exported."
            )
        dense = layers["dense"]
        state = {
            "classifier.dense.weight": tensor(dense, "W"), "classifier.dense.bias": tensor(dense, "b"),
            "classifier.out_proj.weight": tensor(out, "W"), "classifier.out_proj.bias": tensor(out, "b"),
        }
        extra: Dict[str, object] = {"problem_type": MULTI_LABEL if component.multi_label else SINGLE_LABEL}
        return SEQUENCE_CLASSIFICATION, list(component.labels), state, extra
    pools = [node.attrs["pooling"] for node in model.walk() if node.name == "electra_pool_tokens"]
    if pools != ["first"]:
        raise ValueError(
            f"{component.name!r} pools each token's pieces with {pools[0] if pools else 'a custom pooling'}; "
            "HF's ElectraForTokenClassification classifies the first piece, so only pooling = \"first\" exports."
        )
    state = {"classifier.weight": tensor(out, "W"), "classifier.bias": tensor(out, "b")}
    return TOKEN_CLASSIFICATION, list(component.tag_names), state, {}


def _encoder_of(component, nlp: Optional[Language]):
    """The encoder module the component reads: its own, or that of the electra_transformer it listens to."""
    node = own_encoder(component.model)
    if node is not None:
        return get_encoder(node)
    if nlp is not None:
        pipe: Any  # a component; Language types them as plain Doc -> Doc callables
        for name, pipe in nlp.pipeline:
            if component.name in getattr(pipe, "listening_components", ()):
                upstream = own_encoder(pipe.model)
                if upstream is not None:
                    return get_encoder(upstream)
    raise ValueError(
        f"{component.name!r} has no ELECTRA encoder of its own, and no electra_transformer it listens "
        "to was found; export the pipeline it belongs to."
    )


def export_head(component, output_dir: Union[str, Path], *, nlp: Optional[Language] = None) -> str:
    """Write ``component`` (electra_ner, electra_tagger, electra_textcat(_multilabel)) with its
    encoder as an HF ElectraForTokenClassification / ElectraForSequenceClassification folder."""
    if any(node.name == "electra_scalar_mix" for node in component.model.walk()):
        raise ValueError(f"{component.name!r} mixes all encoder layers; HF heads read the last layer only, so it cannot be exported.")
    module = _encoder_of(component, nlp)
    architecture, labels, state, extra = exported_head(component)
    save_checkpoint(
        module.encoder,
        output_dir,
        vocab=module.wordpiece,
        head_state=state,
        config_updates={
            "architectures": [architecture],
            "id2label": {str(i): label for i, label in enumerate(labels)},
            "label2id": {label: i for i, label in enumerate(labels)},
            **extra,
        },
    )
    return architecture
