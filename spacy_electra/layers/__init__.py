"""Thinc layers: the ELECTRA encoder over Docs and the listeners that share it."""
from .listeners import ElectraListener_v1, ElectraScalarMixListener_v1, ElectraTransformerListener
from .transformer import ElectraTransformer_v1
from .compose import ElectraTransformer_v2

__all__ = ["ElectraListener_v1", "ElectraScalarMixListener_v1", "ElectraTransformerListener", "ElectraTransformer_v1", "ElectraTransformer_v2"]
