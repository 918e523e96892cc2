"""``electra_tagger``: a softmax over tags per token, written to ``token.tag_`` (or ``pos_``)."""

from typing import Iterable, List, Optional, Sequence

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Config, Model
from thinc.types import Floats2d

from .heads import TokenClassifierPipe, encoder_config

ATTRS = ("tag", "pos")


@Language.factory(
    "electra_tagger",
    assigns=["token.tag", "token.pos"],
    default_config={"model": Config().from_str(encoder_config("spacy_electra.TokenClassifier.v1"))["model"], "attr": "tag", "labels": None},
    default_score_weights={"tag_acc": 1.0, "pos_acc": None},
)
def make_electra_tagger(nlp: Language, name: str, model: Model, attr: str, labels: Optional[List[str]]) -> "ElectraTagger":
    return ElectraTagger(nlp.vocab, model, name, attr=attr, labels=labels)


class ElectraTagger(TokenClassifierPipe):
    def __init__(self, vocab, model: Model, name: str = "electra_tagger", *, attr: str = "tag", labels: Optional[Sequence[str]] = None) -> None:
        if attr not in ATTRS:
            raise ValueError(f"attr={attr!r} is not one of {', '.join(ATTRS)}.")
        super().__init__(vocab, model, name, labels=labels, attr=attr)

    def _token_attr(self, token) -> str:
        return token.tag_ if self.cfg["attr"] == "tag" else token.pos_

    def labels_from_example(self, example: Example) -> Iterable[str]:
        return (self._token_attr(t) for t in example.reference if self._token_attr(t))

    def gold_tags(self, example: Example) -> List[Optional[str]]:
        gold = example.get_aligned(self.cfg["attr"].upper(), as_string=True)
        return [tag if tag else None for tag in gold]

    def predict(self, docs: Iterable[Doc]) -> List:
        docs = list(docs)
        if not docs:
            return []
        return [scores.argmax(axis=-1) if len(scores) else scores.reshape(0) for scores in self.model.predict(docs)]

    def set_annotations(self, docs: Iterable[Doc], tag_ids: List) -> None:
        labels = self.labels
        for doc, ids in zip(docs, tag_ids):
            for token, i in zip(doc, ids.tolist()):
                if self.cfg["attr"] == "tag":
                    token.tag_ = labels[i]
                else:
                    token.pos_ = labels[i]

    def score(self, examples: Iterable[Example], **kwargs) -> dict:
        return Scorer.score_token_attr(examples, self.cfg["attr"], **kwargs)
