"""``spacy_electra.with_strided_windows.v1``: each doc's pieces in overlapping windows.

Windows of at most ``window`` pieces start every ``stride`` pieces (the last one ends at the
doc's end), each framed as ``[CLS] ... [SEP]``, batched by length up to ``max_batch_items``
padded pieces per forward pass. The wrapped encoder averages the windows that saw a piece, so
no piece is dropped. The windows' piece vectors come back split by doc as ``TransformerData``
(``layers/trf_data.py``). Another combinator (windows per sentence, say) takes the same
encoder node and builds its own ``WindowBatch``.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional, Tuple

from spacy.util import registry
from thinc.api import Model

from ..windows import check_batch_budget, check_window, make_window_batch
from .torch_encoder import get_encoder
from .trf_data import TrfData, doc_gradients, doc_outputs
from .types import PieceBatch, TorchEncoderModel, WindowsModel, WithWindows


@registry.architectures("spacy_electra.with_strided_windows.v1")
def with_strided_windows_v1(*, window: int = 128, stride: int = 96, max_batch_items: int = 4096) -> WithWindows:
    """``window`` and ``stride`` in pieces (``window/2 <= stride <= window``; the limit from the
    encoder's position embeddings is checked once the checkpoint is loaded)."""
    check_window(window, stride)
    check_batch_budget(window, max_batch_items)
    return partial(with_strided_windows, window=window, stride=stride, max_batch_items=max_batch_items)


def with_strided_windows(encoder: TorchEncoderModel, *, window: int, stride: int, max_batch_items: int) -> WindowsModel:
    return Model(
        "electra_with_strided_windows",
        _forward,
        init=_init,
        layers=[encoder],
        dims={"nO": encoder.get_dim("nO") if encoder.has_dim("nO") else None},
        attrs={"window": window, "stride": stride, "max_batch_items": max_batch_items},
    )


def _init(model: WindowsModel, X: Optional[PieceBatch] = None, Y=None) -> WindowsModel:
    encoder = model.layers[0]
    encoder.initialize()
    check_window(model.attrs["window"], model.attrs["stride"], get_encoder(encoder).config.max_position_embeddings)
    model.set_dim("nO", encoder.get_dim("nO"), force=True)
    return model


def _forward(model: WindowsModel, X: PieceBatch, is_train: bool) -> Tuple[TrfData, Callable]:
    encoder = model.layers[0]
    vocab = X.vocab
    batch = make_window_batch(
        X.docs,
        window=model.attrs["window"],
        stride=model.attrs["stride"],
        max_batch_items=model.attrs["max_batch_items"],
        cls_id=vocab.cls_id,
        sep_id=vocab.sep_id,
        pad_id=vocab.pad_id,
    )
    (vectors, cls), backprop_encoder = encoder(batch, is_train)
    outputs = doc_outputs(X.docs, vocab, batch, vectors, cls, encoder.attrs["all_layers"])

    def backprop(d_outputs: TrfData) -> PieceBatch:
        if batch.n_pieces:
            backprop_encoder(doc_gradients(model.ops, d_outputs, batch, vectors.shape[0], vectors.shape[-1]))
        return X

    return outputs, backprop
