"""The one interface through which a trained component becomes a Hugging Face task model.

``spacy-electra export PIPELINE OUT`` lists the components that implement ``ExportsToHF`` and
calls ``export_hf``: the heads (``ElectraForTokenClassification`` /
``ElectraForSequenceClassification``, ``pipes/hf_heads.py``) and QA
(``ElectraForQuestionAnswering``, ``qa/export.py``). A new exportable component implements the
method; the command line needs no change.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol, Union, runtime_checkable

from spacy.language import Language


@runtime_checkable
class ExportsToHF(Protocol):
    name: str

    def export_hf(self, output_dir: Union[str, Path], *, nlp: Optional[Language] = None) -> str:
        """Write the component with its encoder as an HF folder; returns the HF class name."""
        ...
