"""``electra_ner``: per-token BILUO classification with constrained Viterbi decoding.

Decoding only follows valid BILUO transitions, so the output is always a well-formed set of
entities, even from untrained weights. With ``overwrite = false`` (the default) entities already
on a doc are kept: their tokens are forced to O in decoding and predictions fill the rest
around them; ``overwrite = true`` replaces them.
"""

from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np
from spacy.language import Language
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Config, Model

from ..decoding import biluo_tags, spans_from_biluo, transition_mask, viterbi
from . import hf_heads
from .heads import TokenClassifierPipe, encoder_config


@Language.factory(
    "electra_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": Config().from_str(encoder_config("spacy_electra.TokenClassifier.v1"))["model"],
        "labels": None,
        "overwrite": False,
        "normalize": False,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_electra_ner(
    nlp: Language,
    name: str,
    model: Model,
    labels: Optional[List[str]],
    overwrite: bool,
    normalize: bool,
    scorer: Optional[Callable],
) -> "ElectraNER":
    return ElectraNER(nlp.vocab, model, name, labels=labels, overwrite=overwrite, normalize=normalize, scorer=scorer)


class ElectraNER(TokenClassifierPipe):
    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "electra_ner",
        *,
        labels: Optional[Sequence[str]] = None,
        overwrite: bool = False,
        normalize: bool = False,
        scorer: Optional[Callable] = get_ner_prf,
    ) -> None:
        super().__init__(vocab, model, name, labels=labels, scorer=scorer, normalize=normalize, overwrite=overwrite)

    @property
    def tag_names(self) -> List[str]:
        return biluo_tags(self.labels)

    def import_hf_head(self, head: hf_heads.FineTunedHead) -> hf_heads.ImportedHead:
        return hf_heads.ner_head(head)

    def labels_from_example(self, example: Example) -> Iterable[str]:
        return (ent.label_ for ent in example.reference.ents)

    def gold_tags(self, example: Example) -> List[Optional[str]]:
        return [tag if tag not in (None, "", "-") else None for tag in example.get_aligned_ner()]

    def predict(self, docs: Iterable[Doc]) -> List[np.ndarray]:
        """Best valid BILUO path (tag ids) per doc."""
        docs = list(docs)
        if not docs:
            return []
        ops = self.model.ops
        allowed, starts, ends = transition_mask(self.tag_names)
        paths = []
        for doc, logits in zip(docs, self.model.predict(docs)):
            shifted = logits - logits.max(axis=-1, keepdims=True)  # stable log-softmax
            log_probs = ops.to_numpy(shifted - ops.xp.log(ops.xp.exp(shifted).sum(axis=-1, keepdims=True)))
            forced = np.zeros(len(doc), dtype=bool)
            if not self.cfg["overwrite"]:
                for ent in doc.ents:
                    forced[ent.start : ent.end] = True
            paths.append(viterbi(log_probs, allowed, starts, ends, forced))
        return paths

    def set_annotations(self, docs: Iterable[Doc], paths: List[np.ndarray]) -> None:
        tags = self.tag_names
        for doc, path in zip(docs, paths):
            predicted = spans_from_biluo(doc, [tags[i] for i in path])
            kept = [] if self.cfg["overwrite"] else list(doc.ents)
            doc.set_ents(kept + predicted, default="outside")
