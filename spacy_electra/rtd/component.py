"""``electra_rtd``: ELECTRA's discriminator as a component, "was this token replaced?".

The discriminator gives one replaced-token logit per WordPiece; the component sets

* ``token._.rtd_prob``: the token's probability of having been replaced, the **maximum** of
  its pieces' probabilities (sigmoid of the logits): a word counts as replaced if any of its
  pieces does, as a replacement inside a word (``fake`` -> ``f ##ake``) shows in one piece and
  an average over the word's pieces would dilute it. Whitespace tokens have no pieces and get
  0.0, so they are never flagged;
* ``doc._.rtd_score``: the **mean** of the token probabilities over the doc's non-whitespace
  tokens, i.e. the expected fraction of its tokens that were replaced, comparable between
  short and long docs (the max of ``token._.rtd_prob`` is one line away when "is anything
  replaced?" is the question); 0.0 for an empty or whitespace-only doc;
* ``doc.spans[spans_key]`` (default ``"rtd"``): one single-token span, labelled ``REPLACED``,
  per token whose probability is strictly above ``threshold`` (default 0.5, i.e. a positive
  logit, the rule of HF's ``ElectraForPreTraining`` example).

The probabilities live in ``doc._.rtd_probs`` (a plain list, one float per token, so Docs
keep them through ``DocBin`` and multiprocessing); ``token._.rtd_prob`` reads it. Before the
component has run, both are None. The component is not trainable: ``nlp.update`` leaves it
alone (train a discriminator with ``spacy-electra pretrain``).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, Span, Token
from spacy.training import Example
from thinc.api import Config, Model, Optimizer

from ..pipes.saved import CheckedPipe
from .architecture import PieceLogits

DEFAULT_MODEL = """
[model]
@architectures = "spacy_electra.ReplacedTokenDetector.v1"
checkpoint = "google/electra-small-discriminator"
window = 128
stride = 96
max_batch_items = 4096
"""

LABEL = "REPLACED"


def install_extensions() -> None:
    if not Doc.has_extension("rtd_probs"):
        Doc.set_extension("rtd_probs", default=None)
    if not Doc.has_extension("rtd_score"):
        Doc.set_extension("rtd_score", default=None)
    if not Token.has_extension("rtd_prob"):
        Token.set_extension("rtd_prob", getter=_token_prob)


def _token_prob(token: Token) -> Optional[float]:
    probs = token.doc._.rtd_probs
    if probs is None or len(probs) != len(token.doc):  # not run yet, or the doc was retokenized since
        return None
    return probs[token.i]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, without overflow for large negative logits."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


def token_probabilities(lengths: np.ndarray, piece_probs: np.ndarray) -> np.ndarray:
    """Each token's probability from its pieces': the max over the token's ``lengths[i]``
    consecutive pieces, 0.0 for a token with no pieces (whitespace)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    piece_probs = np.asarray(piece_probs, dtype=np.float64)
    if int(lengths.sum()) != len(piece_probs):
        raise ValueError(f"{len(piece_probs)} piece probabilities for tokens with {int(lengths.sum())} pieces.")
    out = np.zeros(len(lengths), dtype=np.float64)
    has_pieces = lengths > 0
    if has_pieces.any():
        starts = (np.cumsum(lengths) - lengths)[has_pieces]
        out[has_pieces] = np.maximum.reduceat(piece_probs, starts)
    return out


@Language.factory(
    "electra_rtd",
    assigns=["token._.rtd_prob", "doc._.rtd_probs", "doc._.rtd_score", "doc.spans"],
    default_config={"model": Config().from_str(DEFAULT_MODEL)["model"], "spans_key": "rtd", "threshold": 0.5},
    default_score_weights={},
)
def make_electra_rtd(nlp: Language, name: str, model: Model, spans_key: str, threshold: float) -> "ElectraReplacedTokenDetector":
    return ElectraReplacedTokenDetector(nlp.vocab, model, name, spans_key=spans_key, threshold=threshold)


class ElectraReplacedTokenDetector(CheckedPipe):
    """Replaced-token probabilities per token and doc, and the flagged tokens as spans."""

    def __init__(self, vocab, model: Model, name: str = "electra_rtd", *, spans_key: str = "rtd", threshold: float = 0.5) -> None:
        if not isinstance(spans_key, str) or not spans_key:
            raise ValueError(f"spans_key={spans_key!r} must be a non-empty string, e.g. \"rtd\".")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold={threshold!r} must be a probability between 0 and 1, e.g. 0.5.")
        install_extensions()
        self.vocab = vocab
        self.model = model
        self.name = name
        self.cfg: Dict[str, Any] = {"spans_key": spans_key, "threshold": float(threshold)}

    @property
    def is_trainable(self) -> bool:
        return False

    @property
    def threshold(self) -> float:
        return self.cfg["threshold"]

    def predict(self, docs: Iterable[Doc]) -> List[PieceLogits]:
        """Each doc's piece logits and its tokens' piece counts."""
        return self.model.predict(list(docs))

    def set_annotations(self, docs: Iterable[Doc], scores: List[PieceLogits]) -> None:
        key, threshold = self.cfg["spans_key"], self.threshold
        for doc, doc_scores in zip(docs, scores):
            piece_probs = sigmoid(self.model.ops.to_numpy(doc_scores.logits))
            probs = token_probabilities(doc_scores.lengths, piece_probs)
            words = np.asarray([not token.is_space for token in doc], dtype=bool)
            probs[~words] = 0.0
            doc._.rtd_probs = probs.tolist()
            doc._.rtd_score = float(probs[words].mean()) if words.any() else 0.0
            doc.spans[key] = [Span(doc, i, i + 1, label=LABEL) for i in np.flatnonzero(probs > threshold).tolist()]

    def initialize(self, get_examples: Optional[Callable[[], Iterable[Example]]] = None, *, nlp: Optional[Language] = None) -> None:
        """Read the checkpoint (it must be an ELECTRA discriminator); no examples needed."""
        self.model.initialize()

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Nothing to learn here: the discriminator runs as it is, so ``nlp.update`` and
        ``spacy train`` leave it unchanged (train one with ``spacy-electra pretrain``)."""
        return {} if losses is None else losses

    def get_loss(self, examples, scores):
        raise NotImplementedError("electra_rtd is not trainable; train a discriminator with `spacy-electra pretrain`.")


install_extensions()  # importing the module is enough for token._.rtd_prob to exist
