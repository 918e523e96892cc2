"""The torch side of ``electra_span_qa``: an ELECTRA encoder with HF's ``qa_outputs`` layer
(hidden -> 2: start and end logit per piece), and its serialisation for Thinc's shim: the
encoder blob of ``layers/windowed_encoder.py`` (config, vocabulary, safetensors weights, SHA-256,
validated before anything is built) with ``qa_outputs`` as its head: no pickle."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..checkpoint.blob import deserialize_encoder_blob, serialize_encoder_blob
from ..pieces import WordPieceEncoder
from ..torch_model import ElectraConfig, ElectraEncoder

RowArrays = Tuple[Tensor, Tensor, Tensor]  # ids, token types, attention mask; each (B, L)


class SpanQAModule(nn.Module):
    """``ElectraForQuestionAnswering`` in our module layout: ``encoder`` (so the shim's layer-wise
    learning-rate decay finds ``encoder.layers.{i}``) and ``qa_outputs``. It also carries the
    WordPiece vocabulary, which makes it everything a saved pipeline needs."""

    def __init__(self, encoder: ElectraEncoder, wordpiece: WordPieceEncoder, head: Optional[Dict[str, Tensor]] = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.wordpiece = wordpiece
        self.qa_outputs = nn.Linear(encoder.config.hidden_size, 2)
        if head:
            self.qa_outputs.load_state_dict({"weight": head["weight"], "bias": head["bias"]})
        else:
            nn.init.normal_(self.qa_outputs.weight, std=encoder.config.initializer_range)
            nn.init.zeros_(self.qa_outputs.bias)

    @property
    def config(self) -> ElectraConfig:
        return self.encoder.config

    def forward(self, chunks: List[RowArrays], *, dropout: bool = False) -> Tuple[Tensor, ...]:
        """(B, L, 2) start/end logits per chunk, in fp32. Dropout is an argument, not module
        state, so one module can serve several threads (see ``model/layers.py``)."""
        return tuple(
            self.qa_outputs(self.encoder.encode(ids, mask, types, dropout=dropout)).float()
            for ids, types, mask in chunks
        )

    def head_state(self) -> Dict[str, Tensor]:
        """The head in HF's key layout, for ``save_checkpoint(head_state=...)``."""
        return {f"qa_outputs.{k}": v.detach().cpu() for k, v in self.qa_outputs.state_dict().items()}


def serialize_span_qa(module: Optional[SpanQAModule]) -> bytes:
    """The encoder blob of ``electra_transformer`` (checksummed, validated on load) with the
    ``qa_outputs`` tensors as its head."""
    if module is None:
        raise ValueError(
            "electra_span_qa has no weights yet: call nlp.initialize() (or `spacy train`) before saving the pipeline."
        )
    head = {k: v for k, v in module.qa_outputs.state_dict().items()}
    return serialize_encoder_blob(module.encoder, module.wordpiece, head=head)


def _head_shapes(config: ElectraConfig) -> Dict[str, Tuple[int, ...]]:
    return {"weight": (2, config.hidden_size), "bias": (2,)}


def deserialize_span_qa(module: Optional[SpanQAModule], data: bytes, device: torch.device) -> SpanQAModule:
    encoder, wordpiece, head = deserialize_encoder_blob(data, head_shapes=_head_shapes)
    return SpanQAModule(encoder, wordpiece, head=head).to(device)
