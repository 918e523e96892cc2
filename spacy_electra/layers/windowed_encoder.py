"""The torch side of ``ElectraTransformer``: an ELECTRA encoder run over a batch of windows.

Overlap averaging happens inside the torch graph, so autograd gives the exact gradient of the
averaged piece vectors; the Thinc side only converts arrays. The module also carries the
WordPiece vocabulary, which makes it (with its config) everything a saved pipeline needs.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import srsly
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from ..model import ElectraConfig, ElectraEncoder
from ..pieces import WordPieceEncoder

Chunk = Tuple[Tensor, Tensor, Tensor, Tensor]  # ids, mask, target, window_index


class WindowedEncoder(nn.Module):
    def __init__(self, encoder: ElectraEncoder, wordpiece: WordPieceEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.wordpiece = wordpiece

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
    ) -> Tuple[Tensor, Tensor]:
        """Returns piece vectors, (n_layers, n_pieces, hidden) with n_layers = 1 (last layer) or
        num_hidden_layers + 1 (embedding output first), and the [CLS] vector of every window
        (n_windows, hidden) in window order."""
        width = self.config.hidden_size
        n_layers = self.config.num_hidden_layers + 1 if all_layers else 1
        # One extra row absorbs [CLS]/[SEP]/padding outputs.
        sums = inv_counts.new_zeros(n_layers, n_pieces + 1, width)
        cls = inv_counts.new_zeros(n_windows, width)
        for ids, mask, target, window_index in chunks:
            if all_layers:
                layers = torch.stack(self.encoder.encode_layers(ids, mask))
            else:
                layers = self.encoder.encode(ids, mask)[None]
            layers = layers.float()  # autocast may give half precision; the sums stay fp32
            sums = sums.index_add(1, target, layers.reshape(n_layers, -1, width))
            cls = cls.index_copy(0, window_index, layers[-1, :, 0])
        return sums[:, :n_pieces] * inv_counts[None, :, None], cls


def serialize_windowed_encoder(module: Optional[WindowedEncoder]) -> bytes:
    """Config, vocabulary and safetensors weights in one msgpack blob (no pickle)."""
    if module is None:
        raise ValueError(
            "The ELECTRA encoder has no weights yet: call nlp.initialize() (or `spacy train`) "
            "before saving the pipeline."
        )
    wp = module.wordpiece
    state = {k: v.detach().cpu().contiguous() for k, v in module.encoder.state_dict().items()}
    return srsly.msgpack_dumps(
        {
            "config": module.config.to_hf_dict(module.encoder.kind),
            "vocab": wp.vocab,
            "tokenizer": wp.tokenizer_config(),
            "weights": save_safetensors(state),
        }
    )


def deserialize_windowed_encoder(
    module: Optional[WindowedEncoder], data: bytes, device: torch.device
) -> WindowedEncoder:
    msg = srsly.msgpack_loads(data)
    config = ElectraConfig.from_hf_dict(msg["config"])
    settings = msg["tokenizer"]
    wordpiece = WordPieceEncoder(
        msg["vocab"],
        lowercase=settings["do_lower_case"],
        strip_accents=settings["strip_accents"],
        tokenize_chinese_chars=settings["tokenize_chinese_chars"],
    )
    encoder = ElectraEncoder(config)
    encoder.load_state_dict(load_safetensors(msg["weights"]))
    return WindowedEncoder(encoder, wordpiece).to(device)
