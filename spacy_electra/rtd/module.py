"""The torch side of ``electra_rtd``: ELECTRA's discriminator (encoder and replaced-token head)
run over a batch of windows, and its serialisation for Thinc's shim: the encoder blob of
``checkpoint/blob.py`` (config, vocabulary, safetensors weights, SHA-256, validated before
anything is built) with the discriminator head as its ``head``, as QA stores ``qa_outputs``.

Windows: the encoder runs through ``WindowedEncoder`` unchanged, so a piece seen by two windows
gets the mean of the two windows' *last hidden states*, and the head then runs once per piece on
that mean. The alternative, averaging the two windows' logits, was not chosen because:

* the averaged hidden states are exactly the piece vectors ``electra_transformer`` gives every
  other component, so a piece's replaced-token probability is the discriminator head applied to
  the vector the rest of the pipeline sees, and the windowing code is reused, not copied;
* the head is nonlinear (dense, activation, linear), so the two differ only on overlapping
  pieces, and neither is what the discriminator was trained on (it saw one sequence); averaging
  the inputs of the head keeps one prediction per piece from one (consensus) representation;
* on a doc that fits one window both are the same, and equal HF's
  ``ElectraForPreTraining`` (tested).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..checkpoint.blob import deserialize_encoder_blob, serialize_encoder_blob
from ..pieces import WordPieceEncoder
from ..torch_model import ElectraConfig, ElectraDiscriminator, ElectraEncoder
from ..torch_model.encoder import DiscriminatorHead
from ..torch_model.windowed import Chunk, WindowedEncoder


class ReplacedTokenModule(nn.Module):
    """``ElectraForPreTraining`` over windows: ``windows`` (the encoder, its vocabulary and the
    overlap averaging) and ``head`` (hidden -> one replaced-token logit per piece)."""

    def __init__(self, encoder: ElectraEncoder, wordpiece: WordPieceEncoder, head: Optional[Dict[str, Tensor]] = None) -> None:
        super().__init__()
        self.windows = WindowedEncoder(encoder, wordpiece)
        self.head = DiscriminatorHead(encoder.config)
        if head is not None:
            self.head.load_state_dict(head)

    @classmethod
    def from_discriminator(cls, discriminator: ElectraDiscriminator, wordpiece: WordPieceEncoder) -> "ReplacedTokenModule":
        """Split a discriminator (``Checkpoint.build("discriminator")``) into encoder and head."""
        state = discriminator.state_dict()
        encoder = ElectraEncoder(discriminator.config)
        encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
        encoder.eval()
        return cls(encoder, wordpiece, {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})

    @property
    def encoder(self) -> ElectraEncoder:
        return self.windows.encoder

    @property
    def wordpiece(self) -> WordPieceEncoder:
        return self.windows.wordpiece

    @property
    def config(self) -> ElectraConfig:
        return self.encoder.config

    def forward(self, chunks: List[Chunk], n_pieces: int, n_windows: int, inv_counts: Tensor, *, dropout: bool = False) -> Tensor:
        """Replaced-token logits, (n_pieces,): the head on the overlap-averaged last hidden
        states. Dropout is an argument, not module state (thread-safe prediction)."""
        hidden, _ = self.windows(chunks, n_pieces, n_windows, inv_counts, dropout=dropout)
        return self.head(hidden[0]).float()


def serialize_rtd(module: Optional[ReplacedTokenModule]) -> bytes:
    """The checked encoder blob with the discriminator head's tensors as its ``head``."""
    if module is None:
        raise ValueError("electra_rtd has no weights yet: call nlp.initialize() before saving the pipeline.")
    return serialize_encoder_blob(module.encoder, module.wordpiece, head=module.head.state_dict())


def head_shapes(config: ElectraConfig) -> Dict[str, Tuple[int, ...]]:
    """The discriminator head's tensors (``DiscriminatorHead``) for ``config``."""
    hidden = config.hidden_size
    return {"dense.weight": (hidden, hidden), "dense.bias": (hidden,), "prediction.weight": (1, hidden), "prediction.bias": (1,)}


def deserialize_rtd(module: Optional[ReplacedTokenModule], data: bytes, device: torch.device) -> ReplacedTokenModule:
    encoder, wordpiece, head = deserialize_encoder_blob(data, head_shapes=head_shapes)
    return ReplacedTokenModule(encoder, wordpiece, head=head).to(device)
