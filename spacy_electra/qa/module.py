"""The torch side of ``electra_span_qa``: an ELECTRA encoder with HF's ``qa_outputs`` layer
(hidden -> 2: start and end logit per piece), and its serialisation for Thinc's shim (config,
vocabulary and safetensors weights in one msgpack blob: no pickle)."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import srsly
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from ..model import ElectraConfig, ElectraEncoder
from ..pieces import WordPieceEncoder

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

    def forward(self, chunks: List[RowArrays]) -> Tuple[Tensor, ...]:
        """(B, L, 2) start/end logits per chunk, in fp32."""
        return tuple(self.qa_outputs(self.encoder.encode(ids, mask, types)).float() for ids, types, mask in chunks)

    def head_state(self) -> Dict[str, Tensor]:
        """The head in HF's key layout, for ``save_checkpoint(head_state=...)``."""
        return {f"qa_outputs.{k}": v.detach().cpu() for k, v in self.qa_outputs.state_dict().items()}


def serialize_span_qa(module: Optional[SpanQAModule]) -> bytes:
    if module is None:
        raise ValueError(
            "electra_span_qa has no weights yet: call nlp.initialize() (or `spacy train`) before saving the pipeline."
        )
    wp = module.wordpiece
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return srsly.msgpack_dumps(
        {
            "config": module.config.to_hf_dict("encoder"),
            "vocab": wp.vocab,
            "tokenizer": wp.tokenizer_config(),
            "weights": save_safetensors(state),
        }
    )


def deserialize_span_qa(module: Optional[SpanQAModule], data: bytes, device: torch.device) -> SpanQAModule:
    msg = srsly.msgpack_loads(data)
    settings = msg["tokenizer"]
    wordpiece = WordPieceEncoder(
        msg["vocab"],
        lowercase=settings["do_lower_case"],
        strip_accents=settings["strip_accents"],
        tokenize_chinese_chars=settings["tokenize_chinese_chars"],
    )
    loaded = SpanQAModule(ElectraEncoder(ElectraConfig.from_hf_dict(msg["config"])), wordpiece)
    loaded.load_state_dict(load_safetensors(msg["weights"]))
    return loaded.to(device).eval()
