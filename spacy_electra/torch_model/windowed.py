"""An ELECTRA encoder run over a batch of windows, the torch side of ``ElectraTransformer``.

Overlap averaging happens inside the torch graph, so autograd gives the exact gradient of the
averaged piece vectors; the Thinc side only converts arrays. Window outputs are added into one
preallocated buffer in place (``index_add_``), so the cost is linear in the pieces of a batch:
an out-of-place ``index_add`` would copy the whole buffer once per chunk, which made long
documents quadratic. Dropout is an argument of ``forward`` rather than module state, so one
module can serve several threads (see ``model/layers.py``). The module also carries the
WordPiece vocabulary, which makes it (with its config) everything a saved pipeline needs.

``inference`` (set by ``backends.apply_inference``; None means fp32 torch) runs the encoder for
calls without grad or dropout only, so training always goes through the fp32 torch path.
"""
from typing import Callable, List, Optional, Protocol, Tuple

import torch
from torch import Tensor, nn

from ..pieces import WordPieceEncoder
from .config import ElectraConfig
from .encoder import ElectraEncoder, needed_mask

Chunk = Tuple[Tensor, Tensor, Tensor, Tensor]  # ids, mask, target, window_index
# An inference backend (see backends.InferenceRunner): ``bind(encoder, all_layers)``, once per
# forward pass, gives ``(ids, mask) -> (n_layers, batch, length, hidden)``, or None for "use the
# torch path".
ChunkEncoder = Callable[[Tensor, Tensor], Tensor]


class InferenceBackend(Protocol):
    kind: str

    def bind(self, encoder: ElectraEncoder, all_layers: bool) -> Optional[ChunkEncoder]: ...


class WindowedEncoder(nn.Module):
    def __init__(self, encoder: ElectraEncoder, wordpiece: WordPieceEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.wordpiece = wordpiece
        self.inference: Optional[InferenceBackend] = None

    @property
    def config(self) -> ElectraConfig:
        return self.encoder.config

    def forward(
        self,
        chunks: List[Chunk],
        n_pieces: int,
        n_windows: int,
        inv_counts: Tensor,
        all_layers: bool = False,
        *,
        dropout: bool = False,
    ) -> Tuple[Tensor, Tensor]:
        """Returns piece vectors, (n_layers, n_pieces, hidden) with n_layers = 1 (last layer) or
        num_hidden_layers + 1 (embedding output first), and the [CLS] vector of every window
        (n_windows, hidden) in window order."""
        width = self.config.hidden_size
        n_layers = self.config.num_hidden_layers + 1 if all_layers else 1
        # One extra row absorbs [CLS]/[SEP]/padding outputs.
        sums = inv_counts.new_zeros(n_layers, n_pieces + 1, width)
        cls = inv_counts.new_zeros(n_windows, width)
        backend = self.inference if not dropout and not torch.is_grad_enabled() else None
        encode = backend.bind(self.encoder, all_layers) if backend is not None else None
        for ids, mask, target, window_index in chunks:
            if encode is not None:
                layers = encode(ids, mask)
            else:
                layers = encode_chunk(self.encoder, ids, needed_mask(mask), all_layers, dropout=dropout)
            layers = layers.float()  # autocast may give half precision; the sums stay fp32
            # In place: autograd records one IndexAdd node per chunk whose backward only gathers
            # that chunk's rows, so forward and backward both stay linear.
            sums.index_add_(1, target, layers.reshape(n_layers, -1, width))
            cls.index_copy_(0, window_index, layers[-1, :, 0])
        return sums[:, :n_pieces] * inv_counts[None, :, None], cls


def encode_chunk(encoder: ElectraEncoder, ids: Tensor, mask: Optional[Tensor], all_layers: bool, *, dropout: bool = False) -> Tensor:
    """One chunk of windows through the torch encoder (fp32, or a backend's derived copy):
    (n_layers, batch, length, hidden), the last layer only or every layer (embedding output first)."""
    if all_layers:
        return torch.stack(encoder.encode_layers(ids, mask, dropout=dropout))
    return encoder.encode(ids, mask, dropout=dropout)[None]
