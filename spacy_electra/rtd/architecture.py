"""``spacy_electra.ReplacedTokenDetector.v1``: Docs in, one replaced-token logit per WordPiece out.

Each doc's non-whitespace tokens are encoded to WordPieces one token at a time (whitespace
tokens get no pieces), covered by the strided windows of ``windows.py`` and run through the
discriminator (``module.py``: the head on the overlap-averaged last hidden states). The output
keeps each token's piece count, so the component maps pieces back to tokens exactly.

Building the model reads nothing: the checkpoint is read at ``initialize`` and must be a
discriminator (it must carry HF's ``discriminator_predictions`` head); anything else is one
``CheckpointError`` naming the checkpoint and the fix. The architecture predicts only: the
component runs a pretrained discriminator as it is (``spacy-electra pretrain`` trains one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, cast

import numpy as np
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp
from thinc.types import Floats1d

from ..checkpoint import Checkpoint, CheckpointError
from ..layers.loaders import read_for
from ..layers.shim import electra_shim, make_shim
from ..layers.torch_encoder import window_args
from ..pieces import TokenPieces, WordPieceEncoder
from ..torch_model import ElectraDiscriminator
from ..windows import check_batch_budget, check_window, make_window_batch
from .module import ReplacedTokenModule, deserialize_rtd, serialize_rtd

DEFAULT_CHECKPOINT = "google/electra-small-discriminator"
SECTION = "[components.electra_rtd.model]"


@dataclass
class PieceLogits:
    """One doc's replaced-token logits, one per WordPiece in doc order, and each token's piece
    count (0 for whitespace tokens), which sum to the number of logits."""

    lengths: np.ndarray  # int32 (n_tokens,), always on the CPU
    logits: Floats1d  # (n_pieces,), on the model's device


ReplacedTokenModel = Model[List[Doc], List[PieceLogits]]


@registry.architectures("spacy_electra.ReplacedTokenDetector.v1")
def ReplacedTokenDetector_v1(
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    window: int = 128,
    stride: int = 96,
    max_batch_items: int = 4096,
) -> ReplacedTokenModel:
    """An ELECTRA discriminator read from ``checkpoint`` (a local HF-format folder or a Hub id)
    at ``initialize``. ``window`` and ``stride`` in pieces, as for ``with_strided_windows.v1``
    (``window/2 <= stride <= window``; the limit from the position embeddings is checked once
    the checkpoint is read); ``max_batch_items`` bounds the padded pieces of one forward pass."""
    check_window(window, stride)
    check_batch_budget(window, max_batch_items)
    return Model(
        "electra_rtd",
        forward,
        init=init,
        shims=[make_shim(serialize_rtd, deserialize_rtd)],
        attrs={"checkpoint": str(checkpoint), "window": window, "stride": stride, "max_batch_items": max_batch_items},
    )


def require_discriminator(checkpoint: Checkpoint, section: str = SECTION) -> None:
    """Refuse a checkpoint without the replaced-token-detection head (a bare encoder, a
    generator, BERT, a fine-tuned classifier or QA model), naming it and the fix."""
    if checkpoint.kind == "discriminator":
        return
    model_type = str(checkpoint.raw_config.get("model_type", "electra")).upper()
    holds = ", ".join(checkpoint.architectures) or f"a {model_type} {'encoder' if checkpoint.kind == 'encoder' else checkpoint.kind}"
    raise CheckpointError(
        f"The checkpoint {checkpoint.source} ({holds}) has no replaced-token-detection head (discriminator_predictions), "
        f"which electra_rtd needs: set `checkpoint` in {section} to an ELECTRA discriminator, e.g. "
        "google/electra-small-discriminator or the discriminator/ folder that `spacy-electra pretrain` writes."
    )


def get_module(model: ReplacedTokenModel) -> ReplacedTokenModule:
    module = electra_shim(model).module
    if module is None:
        raise ValueError(
            "electra_rtd is not initialized: run nlp.initialize(), or load a saved pipeline with spacy.load()."
        )
    return module


def init(model: ReplacedTokenModel, X: Optional[List[Doc]] = None, Y: Optional[object] = None) -> ReplacedTokenModel:
    checkpoint = read_for(model, SECTION, check=require_discriminator)
    check_window(model.attrs["window"], model.attrs["stride"], checkpoint.config.max_position_embeddings)
    discriminator = checkpoint.build("discriminator")
    assert isinstance(discriminator, ElectraDiscriminator)
    electra_shim(model).module = ReplacedTokenModule.from_discriminator(discriminator, checkpoint.require_vocab())
    return model


def doc_pieces(wordpiece: WordPieceEncoder, docs: Sequence[Doc]) -> List[TokenPieces]:
    """Each doc's piece ids and every token's piece count; whitespace tokens (``is_space``)
    are left out of the encoding and get 0 pieces, as in ``with_non_ws_tokens.v1``."""
    kept = [np.asarray([t.i for t in doc if not t.is_space], dtype=np.int64) for doc in docs]
    encoded = wordpiece.encode_batch([[doc[int(i)].text for i in keep] for doc, keep in zip(docs, kept)])
    out = []
    for doc, keep, pieces in zip(docs, kept, encoded):
        lengths = np.zeros(len(doc), dtype=np.int32)
        lengths[keep] = pieces.lengths
        out.append(TokenPieces(pieces.ids, lengths))
    return out


def forward(model: ReplacedTokenModel, docs: List[Doc], is_train: bool) -> Tuple[List[PieceLogits], Callable]:
    module = get_module(model)
    wp = module.wordpiece
    pieces = doc_pieces(wp, docs)
    batch = make_window_batch(
        pieces, window=model.attrs["window"], stride=model.attrs["stride"],
        max_batch_items=model.attrs["max_batch_items"], cls_id=wp.cls_id, sep_id=wp.sep_id, pad_id=wp.pad_id,
    )
    if batch.n_pieces == 0:
        flat = model.ops.alloc1f(0)
    else:
        shim = electra_shim(model)
        flat = cast(Floats1d, torch2xp(shim.predict(ArgsKwargs(args=window_args(batch, shim.device), kwargs={}))))
    ends = np.cumsum(batch.doc_pieces, dtype=np.int64)
    outputs = [
        PieceLogits(p.lengths, cast(Floats1d, flat[end - len(p.ids) : end])) for p, end in zip(pieces, ends)
    ]

    def backprop(d_outputs: List[Floats1d]) -> List[Doc]:
        raise NotImplementedError(
            "spacy_electra.ReplacedTokenDetector.v1 predicts only; to train a discriminator, use `spacy-electra pretrain`."
        )

    return outputs, backprop
