"""Extractive question answering (SQuAD 1.1 / 2.0): the ``electra_span_qa`` component, its
``spacy_electra.SpanQA.v1`` architecture, the SQuAD converter, scorer and HF export."""
from .architecture import SpanQA_v1
from .component import ElectraSpanQA, QAAnswer, make_electra_span_qa
from .convert import SquadReport, convert_squad, squad_to_docs
from .export import export_span_qa

__all__ = [
    "ElectraSpanQA",
    "QAAnswer",
    "SpanQA_v1",
    "SquadReport",
    "convert_squad",
    "export_span_qa",
    "make_electra_span_qa",
    "squad_to_docs",
]
