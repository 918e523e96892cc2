"""Replaced-token detection: ELECTRA's discriminator as the ``electra_rtd`` component (per-token
probabilities, a doc score, flagged tokens as spans) and its ``spacy_electra.ReplacedTokenDetector.v1``
architecture."""
from .architecture import PieceLogits, ReplacedTokenDetector_v1
from .component import ElectraReplacedTokenDetector, make_electra_rtd, token_probabilities

__all__ = ["ElectraReplacedTokenDetector", "PieceLogits", "ReplacedTokenDetector_v1", "make_electra_rtd", "token_probabilities"]
