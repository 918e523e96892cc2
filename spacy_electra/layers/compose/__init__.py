"""``spacy_electra.ElectraTransformer.v2`` and the registered nodes it is composed of (see
``electra_transformer.py``); importing this package registers them."""
from .electra_transformer import ElectraTransformer_v2
from .piece_encoder import WordPieceEncoder_v1
from .strided_windows import with_strided_windows_v1
from .torch_encoder import WindowedEncoder_v1
from .whitespace import with_non_ws_tokens_v1

__all__ = ["ElectraTransformer_v2", "WindowedEncoder_v1", "WordPieceEncoder_v1", "with_non_ws_tokens_v1", "with_strided_windows_v1"]
