"""``electra_tagger``: a softmax over tags per token, written to ``token.tag_`` (or ``pos_``)."""

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Config, Model

from . import hf_heads
from .heads import TokenClassifierPipe, encoder_config

ATTRS = ("tag", "pos")


def tagger_score(examples: Iterable[Example], *, attr: str = "tag", **kwargs) -> Dict[str, Any]:
    """``{attr}_acc``: token accuracy of ``attr`` (the tagger passes its ``cfg``, ``attr`` included)."""
    return Scorer.score_token_attr(examples, attr, **kwargs)


@registry.scorers("spacy_electra.tagger_scorer.v1")
def make_tagger_scorer() -> Callable:
    return tagger_score


@Language.factory(
    "electra_tagger",
    assigns=["token.tag", "token.pos"],
    default_config={
        "model": Config().from_str(encoder_config("spacy_electra.TokenClassifier.v1"))["model"],
        "attr": "tag",
        "labels": None,
        "overwrite": False,
        "normalize": False,
        "scorer": {"@scorers": "spacy_electra.tagger_scorer.v1"},
    },
    # Weighted alike so that spacy train's main score follows whichever attr is predicted (the
    # weights are per factory, not per instance): set the unused one to null in
    # [training.score_weights] to read the main score as an accuracy.
    default_score_weights={"tag_acc": 0.5, "pos_acc": 0.5},
)
def make_electra_tagger(
    nlp: Language,
    name: str,
    model: Model,
    attr: str,
    labels: Optional[List[str]],
    overwrite: bool,
    normalize: bool,
    scorer: Optional[Callable],
) -> "ElectraTagger":
    return ElectraTagger(
        nlp.vocab, model, name, attr=attr, labels=labels, overwrite=overwrite, normalize=normalize, scorer=scorer
    )


class ElectraTagger(TokenClassifierPipe):
    """``overwrite = false`` (spaCy's default) keeps a value that a token already has."""

    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "electra_tagger",
        *,
        attr: str = "tag",
        labels: Optional[Sequence[str]] = None,
        overwrite: bool = False,
        normalize: bool = False,
        scorer: Optional[Callable] = tagger_score,
    ) -> None:
        if attr not in ATTRS:
            raise ValueError(f"attr={attr!r} is not one of {', '.join(ATTRS)}.")
        super().__init__(vocab, model, name, labels=labels, scorer=scorer, normalize=normalize, attr=attr, overwrite=overwrite)

    def _token_attr(self, token) -> str:
        return token.tag_ if self.cfg["attr"] == "tag" else token.pos_

    def import_hf_head(self, head: hf_heads.FineTunedHead) -> hf_heads.ImportedHead:
        return hf_heads.tagger_head(head)

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
        is_tag = self.cfg["attr"] == "tag"
        overwrite = self.cfg["overwrite"]
        for doc, ids in zip(docs, tag_ids):
            for token, i in zip(doc, ids.tolist()):
                if is_tag and (overwrite or token.tag == 0):
                    token.tag_ = labels[i]
                elif not is_tag and (overwrite or token.pos == 0):
                    token.pos_ = labels[i]

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        """As spaCy's ``Pipe.score`` (the scorer gets ``cfg`` and ``labels``), except that ``attr``
        is only passed when it is not ``tag``: spaCy's ``spacy.tagger_scorer.v1`` then works too."""
        settings = {**self.cfg, "labels": self.labels, **kwargs}
        if settings["attr"] == "tag":
            del settings["attr"]
        return self.scorer(examples, **settings) if self.scorer is not None else {}
