"""``electra_textcat`` (exclusive classes, softmax) and ``electra_textcat_multilabel``
(independent labels, sigmoid + threshold), both on ELECTRA's [CLS] classification head.

Settings follow spaCy's ``textcat`` / ``textcat_multilabel``: ``threshold`` (used by the
multi-label scorer; unused for exclusive classes, which take the best class), ``positive_label``
given to ``initialize`` for a binary exclusive task (the main score is then that label's F), and
a registered ``scorer`` (spaCy's own by default).
"""

from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.pipeline.textcat import textcat_score
from spacy.pipeline.textcat_multilabel import textcat_multilabel_score
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Config, Model
from thinc.types import Floats2d

from . import hf_heads
from .heads import ElectraHead, encoder_config

DOC_CONFIG = Config().from_str(encoder_config("spacy_electra.DocClassifier.v1"))["model"]
SCORE_WEIGHTS = {
    "cats_score": 1.0, "cats_score_desc": None, "cats_micro_p": None, "cats_micro_r": None, "cats_micro_f": None,
    "cats_macro_p": None, "cats_macro_r": None, "cats_macro_f": None, "cats_macro_auc": None, "cats_f_per_type": None,
}


@Language.factory(
    "electra_textcat",
    assigns=["doc.cats"],
    default_config={
        "model": DOC_CONFIG,
        "labels": None,
        "threshold": 0.0,
        "normalize": False,
        "scorer": {"@scorers": "spacy.textcat_scorer.v2"},
    },
    default_score_weights=SCORE_WEIGHTS,
)
def make_electra_textcat(
    nlp: Language, name: str, model: Model, labels: Optional[List[str]], threshold: float, normalize: bool, scorer: Optional[Callable]
) -> "ElectraTextCat":
    return ElectraTextCat(nlp.vocab, model, name, labels=labels, threshold=threshold, normalize=normalize, scorer=scorer)


@Language.factory(
    "electra_textcat_multilabel",
    assigns=["doc.cats"],
    default_config={
        "model": DOC_CONFIG,
        "labels": None,
        "threshold": 0.5,
        "normalize": False,
        "scorer": {"@scorers": "spacy.textcat_multilabel_scorer.v2"},
    },
    default_score_weights=SCORE_WEIGHTS,
)
def make_electra_textcat_multilabel(
    nlp: Language, name: str, model: Model, labels: Optional[List[str]], threshold: float, normalize: bool, scorer: Optional[Callable]
) -> "ElectraTextCatMultilabel":
    return ElectraTextCatMultilabel(
        nlp.vocab, model, name, labels=labels, threshold=threshold, normalize=normalize, scorer=scorer
    )


class ElectraTextCat(ElectraHead):
    """Exclusive classes: a softmax, one class per doc."""

    multi_label = False

    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "electra_textcat",
        *,
        labels: Optional[Sequence[str]] = None,
        threshold: float = 0.0,
        normalize: bool = False,
        scorer: Optional[Callable] = textcat_score,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold={threshold} must be between 0 and 1.")
        super().__init__(
            vocab, model, name, labels=labels, scorer=scorer, normalize=normalize, threshold=threshold, positive_label=None
        )

    def labels_from_example(self, example: Example) -> Iterable[str]:
        return example.reference.cats.keys()

    def import_hf_head(self, head: hf_heads.FineTunedHead) -> hf_heads.ImportedHead:
        return hf_heads.textcat_head(head, self.multi_label)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp=None,
        labels: Optional[Sequence[str]] = None,
        positive_label: Optional[str] = None,
    ) -> None:
        """As ``ElectraHead.initialize``; ``positive_label`` (exclusive classes, two labels, as
        spaCy's textcat) makes the main score that label's F instead of the macro F."""
        super().initialize(get_examples, nlp=nlp, labels=labels)
        if positive_label is not None:
            if self.multi_label:
                raise ValueError(f"{self.name!r} is multi-label: positive_label only applies to electra_textcat.")
            if positive_label not in self.labels or len(self.labels) != 2:
                raise ValueError(
                    f"positive_label={positive_label!r} needs exactly two labels, one of them {positive_label!r}; "
                    f"{self.name!r} has {', '.join(self.labels)}."
                )
        self.cfg["positive_label"] = positive_label

    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        docs = list(docs)
        ops = self.model.ops
        if not docs:
            return ops.alloc2f(0, len(self.labels))
        logits = self.model.predict(docs)
        return ops.sigmoid(logits) if self.multi_label else ops.softmax(logits, axis=-1)

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        for doc, row in zip(docs, self.model.ops.to_numpy(scores)):
            doc.cats.update({label: float(score) for label, score in zip(self.labels, row)})

    def get_loss(self, examples: Iterable[Example], logits: Floats2d) -> Tuple[float, Floats2d]:
        """Cross-entropy (exclusive) or binary cross-entropy (multilabel), summed over docs
        (averaged with ``normalize = true``); a doc or label without a gold value gets no gradient."""
        ops = self.model.ops
        examples = list(examples)
        gold, known = self._gold(examples)
        if self.multi_label:
            probs = ops.sigmoid(logits)
            d = (probs - gold) * known
            eps = 1e-7
            loss = -(known * (gold * ops.xp.log(probs + eps) + (1 - gold) * ops.xp.log(1 - probs + eps))).sum()
            norm = max(float(known.sum()), 1.0)
        else:
            probs = ops.softmax(logits, axis=-1)
            row_known = known[:, :1]
            d = (probs - gold) * row_known
            loss = -(gold * ops.xp.log(probs + 1e-7)).sum()
            norm = max(float(row_known.sum()), 1.0)
        if not self.cfg["normalize"]:
            norm = 1.0
        return float(loss) / norm, d / norm

    def _gold(self, examples: List[Example]):
        ops = self.model.ops
        gold = ops.alloc2f(len(examples), len(self.labels))
        known = ops.alloc2f(len(examples), len(self.labels))
        for i, example in enumerate(examples):
            cats = example.reference.cats
            unknown = sorted(set(cats) - set(self.labels))
            if unknown:
                raise ValueError(
                    f"{self.name!r}: the training data has label(s) {', '.join(unknown)} that the component "
                    f"does not know ({', '.join(self.labels)}). Re-run initialize on this data."
                )
            for j, label in enumerate(self.labels):
                if label in cats:
                    gold[i, j] = cats[label]
                    known[i, j] = 1.0
            if not self.multi_label and cats:
                if abs(sum(cats.get(label, 0.0) for label in self.labels) - 1.0) > 1e-6:
                    raise ValueError(
                        f"{self.name!r} is exclusive (one class per doc), but a training doc has cats "
                        f"{dict(cats)}. Use electra_textcat_multilabel for multi-label data."
                    )
                known[i] = 1.0
        return gold, known


class ElectraTextCatMultilabel(ElectraTextCat):
    """Independent labels: a sigmoid per label; ``threshold`` decides what the scorer counts
    as predicted."""

    multi_label = True

    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "electra_textcat_multilabel",
        *,
        labels: Optional[Sequence[str]] = None,
        threshold: float = 0.5,
        normalize: bool = False,
        scorer: Optional[Callable] = textcat_multilabel_score,
    ) -> None:
        super().__init__(vocab, model, name, labels=labels, threshold=threshold, normalize=normalize, scorer=scorer)
