"""Thinc layers: Docs -> pieces -> windows -> torch encoder -> ``TransformerData``, and the
heads and listeners on top. The compact torch model itself lives in ``torch_model/``.

    types.py               the type aliases, defined once
    piece_encoder.py       spacy_electra.WordPieceEncoder.v1: tokens -> piece ids
    strided_windows.py     spacy_electra.with_strided_windows.v1: pieces -> windows -> per-doc output
    torch_encoder.py       spacy_electra.TorchEncoder.v1: the torch encoder as a node
    whitespace.py          spacy_electra.with_non_ws_tokens.v1: whitespace tokens bypass it all
    electra_transformer.py spacy_electra.ElectraTransformer.v1: the above, composed
    shim.py                ElectraShim: thread-safe prediction, layer-wise lr decay, inference
    loaders.py             checkpoints into nodes, at initialize only
    trf_data.py            encoder outputs as spacy-transformers' TransformerData, and back
    listeners.py           listeners and pooling for downstream components
    heads.py               TokenClassifier.v1, DocClassifier.v1
"""
from .electra_transformer import ElectraTransformer_v1
from .heads import DocClassifier_v1, ElectraTransformerListener_v1, TokenClassifier_v1
from .listeners import ElectraListener_v1, ElectraScalarMixListener_v1, ElectraTransformerListener
from .piece_encoder import WordPieceEncoder_v1
from .strided_windows import with_strided_windows_v1
from .torch_encoder import TorchEncoder_v1
from .whitespace import with_non_ws_tokens_v1

__all__ = [
    "DocClassifier_v1", "ElectraListener_v1", "ElectraScalarMixListener_v1", "ElectraTransformerListener",
    "ElectraTransformerListener_v1", "ElectraTransformer_v1", "TokenClassifier_v1", "TorchEncoder_v1",
    "WordPieceEncoder_v1", "with_non_ws_tokens_v1", "with_strided_windows_v1",
]
