"""Machinery shared by the task components: labels, initialisation, scoring, and per-token
cross-entropy. The components themselves (tagger, NER, textcat) only say what their gold
targets are and how predictions become annotations.

Loss scale follows spaCy (the tagger's ``normalize=False``, the parser, textcat): the loss and
its gradient are summed over tokens (docs for textcat), not averaged. A head and a spaCy
component that share one ``electra_transformer`` then push gradients of the same scale into it.
``normalize = true`` averages over the tokens (docs) with a gold value instead.
"""

from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, List, NoReturn, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.training import Example, validate_get_examples
from thinc.api import Model
from thinc.types import Floats2d

from ..layers import heads as _default_architectures  # noqa: F401 (registers them before entry points exist)
from ..layers.electra_transformer import encoder_config as transformer_config
from ..layers.loaders import lend
from . import hf_heads
from .saved import CheckedPipe


def encoder_config(head: str, **head_args: object) -> str:
    """Default model config of a head: its own ELECTRA-small encoder."""
    args = "\n".join(f"{k} = {v}" for k, v in head_args.items())
    return f"""
[model]
@architectures = "{head}"
{args}
""" + transformer_config("model.tok2vec")


def refuse_rehearsal(name: str) -> NoReturn:
    raise NotImplementedError(
        f"{name!r} does not support rehearsal (nlp.rehearse): train on a mix of old and new examples "
        "with nlp.update, or list the component in [training] frozen_components to keep it as it is."
    )


class ElectraHead(CheckedPipe):
    """A component with a label set and an ELECTRA-based model whose output layer has one unit
    per output class (``n_outputs``). ``scorer`` is a registered scorer, called as spaCy's
    components call theirs (``Pipe.score``: with ``cfg`` and ``labels`` as keyword arguments);
    ``normalize`` chooses the loss scale (see the module docstring)."""

    def __init__(
        self,
        vocab,
        model: Model,
        name: str,
        *,
        labels: Optional[Sequence[str]] = None,
        scorer: Optional[Callable] = None,
        normalize: bool = False,
        **cfg,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg = {"labels": list(labels or []), "normalize": normalize, **cfg}

    def rehearse(self, examples, *, drop=0.0, sgd=None, losses=None):
        refuse_rehearsal(self.name)

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    @property
    def n_outputs(self) -> int:
        return len(self.labels)

    def check_loaded(self, source: str) -> None:
        """The output layer must have one row per output of the loaded labels."""
        output = self.model.get_ref("output_layer")
        if output.has_dim("nO") and output.get_dim("nO") != self.n_outputs:
            raise ValueError(
                f"{source}: {self.name!r} has {self.n_outputs} outputs for its labels but its model has "
                f"{output.get_dim('nO')}; its cfg and model come from different pipelines: restore a good copy."
            )

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(f"Labels must be non-empty strings, got {label!r}.")
        if label in self.labels:
            return 0
        if self.model.get_ref("output_layer").has_dim("nO"):
            raise ValueError(
                f"Cannot add label {label!r} to {self.name!r} after it was initialized; add all "
                "labels before nlp.initialize() (or let initialize infer them from the data)."
            )
        self.cfg["labels"].append(label)
        return 1

    def labels_from_example(self, example: Example) -> Iterable[str]:
        raise NotImplementedError

    def import_hf_head(self, head: "hf_heads.FineTunedHead") -> "hf_heads.ImportedHead":
        """Convert a checkpoint's fine-tuned HF head for this component (see ``hf_heads``)."""
        raise NotImplementedError

    def export_hf(self, output_dir: Union[str, Path], *, nlp: Optional[Language] = None) -> str:
        """Write this component and its encoder as an HF task-model folder (see ``hf_heads``);
        returns the HF class (``pipes/export.py``)."""
        return hf_heads.export_head(self, output_dir, nlp=nlp)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp=None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Take ``labels`` if given (e.g. from ``spacy init labels``), else infer them from the
        training examples; then size the output layer and initialise (reading the encoder's
        checkpoint once when the head has its own encoder).

        When that checkpoint is a fine-tuned HF classifier of a kind this component can use, its
        labels (``id2label``) and head weights are taken instead: given labels and those of the
        training data must be among them. ``nlp.initialize()`` without data then gives a
        working component."""
        validate_get_examples(get_examples, f"{type(self).__name__}.initialize")
        checkpoint = hf_heads.read_own_checkpoint(self.model, f"[components.{self.name}.model.tok2vec.encoder]")
        found = hf_heads.fine_tuned_head(checkpoint) if checkpoint is not None else None
        imported = self.import_hf_head(found) if found is not None else None
        if found is not None and imported is not None:
            hf_heads.check_pooling(self.model, found)
            wanted = list(labels or []) + list(self.cfg["labels"])
            wanted += [label for example in get_examples() for label in self.labels_from_example(example)]
            hf_heads.check_labels(self.name, found.source, imported.labels, wanted)
            self.cfg["labels"] = list(imported.labels)
            hf_heads.size_for(self.model, imported)
        elif labels is not None:
            for label in labels:
                self.add_label(label)
        elif not self.labels:
            for example in get_examples():
                for label in self.labels_from_example(example):
                    self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"{self.name!r} found no labels: the training data has no annotations for it. "
                "Check the data (e.g. that the converter set tags, entities or cats), or pass "
                "labels to initialize."
            )
        self.model.get_ref("output_layer").set_dim("nO", self.n_outputs, force=imported is not None)
        sample = [eg.predicted for eg in islice(get_examples(), 10)]
        with lend(checkpoint) if checkpoint is not None else nullcontext():  # read once, not twice
            self.model.initialize(X=sample)
        if imported is not None:
            hf_heads.load_into(self.model, imported)


class TokenClassifierPipe(ElectraHead):
    """A head with one softmax over ``tag_names`` per token (tagger: the labels; NER: their BILUO
    tags). Subclasses say what a token's gold tag is and how tag ids become annotations."""

    @property
    def tag_names(self) -> List[str]:
        return list(self.labels)

    @property
    def n_outputs(self) -> int:
        return len(self.tag_names)

    def gold_tags(self, example: Example) -> List[Optional[str]]:
        """Gold tag per predicted token; None where unknown (no gradient)."""
        raise NotImplementedError

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """Softmax cross-entropy, summed over the tokens whose gold tag is known (averaged with
        ``normalize = true``). Tokens without a gold tag send no gradient."""
        index = {tag: i for i, tag in enumerate(self.tag_names)}
        ops = self.model.ops
        grads, total, n_known = [], 0.0, 0
        for example, logits in zip(examples, scores):
            gold = self.gold_tags(example)
            unknown = sorted({tag for tag in gold if tag is not None and tag not in index})
            if unknown:
                raise ValueError(
                    f"{self.name!r}: the training data has label(s) {', '.join(unknown)} that the "
                    f"component does not know ({', '.join(self.labels)}). Re-run initialize on this "
                    "data, or add the labels before initializing."
                )
            ids = ops.asarray1i([index[tag] if tag is not None else -1 for tag in gold])
            probs = ops.softmax(logits, axis=-1)
            known = ids >= 0
            rows = ops.xp.arange(len(ids))[known]
            d_logits = probs.copy()
            d_logits[rows, ids[known]] -= 1.0
            d_logits[~known] = 0.0
            total -= float(ops.xp.log(probs[rows, ids[known]] + 1e-12).sum())
            n_known += int(known.sum())
            grads.append(d_logits)
        norm = max(n_known, 1) if self.cfg["normalize"] else 1
        return total / norm, [g / norm for g in grads]
