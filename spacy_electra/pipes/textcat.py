"""``electra_textcat`` (exclusive classes, softmax) and ``electra_textcat_multilabel``
(independent labels, sigmoid + threshold), both on ELECTRA's [CLS] classification head."""

from typing import Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Config, Model
from thinc.types import Floats2d

from .heads import ElectraHead, encoder_config

DOC_CONFIG = Config().from_str(encoder_config("spacy_electra.DocClassifier.v1"))["model"]


@Language.factory(
    "electra_textcat",
    assigns=["doc.cats"],
    default_config={"model": DOC_CONFIG, "labels": None},
    default_score_weights={"cats_score": 1.0, "cats_macro_f": None, "cats_micro_f": None, "cats_macro_auc": None, "cats_f_per_type": None},
)
def make_electra_textcat(nlp: Language, name: str, model: Model, labels: Optional[List[str]]) -> "ElectraTextCat":
    return ElectraTextCat(nlp.vocab, model, name, labels=labels)


@Language.factory(
    "electra_textcat_multilabel",
    assigns=["doc.cats"],
    default_config={"model": DOC_CONFIG, "labels": None, "threshold": 0.5},
    default_score_weights={"cats_score": 1.0, "cats_macro_f": None, "cats_micro_f": None, "cats_macro_auc": None, "cats_f_per_type": None},
)
def make_electra_textcat_multilabel(
    nlp: Language, name: str, model: Model, labels: Optional[List[str]], threshold: float
) -> "ElectraTextCat":
    return ElectraTextCat(nlp.vocab, model, name, labels=labels, multi_label=True, threshold=threshold)


class ElectraTextCat(ElectraHead):
    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "electra_textcat",
        *,
        labels: Optional[Sequence[str]] = None,
        multi_label: bool = False,
        threshold: float = 0.5,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold={threshold} must be between 0 and 1.")
        super().__init__(vocab, model, name, labels=labels, multi_label=multi_label, threshold=threshold)

    def labels_from_example(self, example: Example) -> Iterable[str]:
        return example.reference.cats.keys()

    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        docs = list(docs)
        ops = self.model.ops
        if not docs:
            return ops.alloc2f(0, len(self.labels))
        logits = self.model.predict(docs)
        return ops.sigmoid(logits) if self.cfg["multi_label"] else ops.softmax(logits, axis=-1)

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        for doc, row in zip(docs, self.model.ops.to_numpy(scores)):
            doc.cats.update({label: float(score) for label, score in zip(self.labels, row)})

    def get_loss(self, examples: Iterable[Example], logits: Floats2d) -> Tuple[float, Floats2d]:
        """Cross-entropy (exclusive) or binary cross-entropy (multilabel); a doc or label without
        a gold value gets no gradient."""
        ops = self.model.ops
        examples = list(examples)
        gold, known = self._gold(examples)
        if self.cfg["multi_label"]:
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
            if not self.cfg["multi_label"] and cats:
                if abs(sum(cats.get(label, 0.0) for label in self.labels) - 1.0) > 1e-6:
                    raise ValueError(
                        f"{self.name!r} is exclusive (one class per doc), but a training doc has cats "
                        f"{dict(cats)}. Use electra_textcat_multilabel for multi-label data."
                    )
                known[i] = 1.0
        return gold, known

    def score(self, examples: Iterable[Example], **kwargs) -> dict:
        kwargs.setdefault("threshold", self.cfg["threshold"] if self.cfg["multi_label"] else 0.0)
        return Scorer.score_cats(examples, "cats", labels=self.labels, multi_label=self.cfg["multi_label"], **kwargs)
