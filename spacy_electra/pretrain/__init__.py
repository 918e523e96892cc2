"""Replaced-token-detection pretraining (ELECTRA) and its masked-LM control.

Names are imported on first use, so the command line (which imports ``.commands``) starts
without loading torch.
"""
from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConfigError": "config", "PretrainConfig": "config", "load_config": "config",
    "PackedCorpus": "corpus", "build_corpus": "corpus",
    "export_models": "trainer", "pretrain": "trainer",
    "train_vocab": "vocab",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
