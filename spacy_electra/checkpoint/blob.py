"""The encoder blob inside a saved pipeline (Thinc's PyTorchShim serialises through it): config,
vocabulary and safetensors weights in one msgpack blob, so a saved pipeline needs nothing else
(and no pickle).

The blob carries a SHA-256 of its content, so a flipped bit on disk is an error at
``spacy.load`` rather than silently different vectors. Everything in the blob is checked (types,
config ranges, tensor names, dtypes and shapes against the config, vocabulary size, NaN/inf)
before the encoder is built, as for a checkpoint folder.
"""
import hashlib
import json
import re
from typing import Any, Callable, Dict, Optional, Tuple

import srsly
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..pieces import VocabError, WordPieceEncoder
from ..torch_model.config import ElectraConfig
from ..torch_model.encoder import ElectraEncoder
from ..torch_model.windowed import WindowedEncoder
from .errors import CheckpointError
from .files import (
    FileProblem,
    check_dtypes,
    check_finite,
    compare_shapes,
    layer_count,
    our_shapes,
    reading,
    safetensors_header_from_bytes,
)

SOURCE = "the ELECTRA encoder in this pipeline"
_FIX = "Restore the pipeline from a good copy (or train it again)."
_LAYER = re.compile(r"^layers\.(\d+)\.")
_NOTHING_IGNORED = re.compile(r"(?!)")


def serialize_windowed_encoder(module: Optional[WindowedEncoder]) -> bytes:
    """Config, vocabulary and safetensors weights in one msgpack blob (no pickle)."""
    if module is None:
        raise ValueError(
            "The ELECTRA encoder has no weights yet: call nlp.initialize() (or `spacy train`) "
            "before saving the pipeline."
        )
    return serialize_encoder_blob(module.encoder, module.wordpiece)


def serialize_encoder_blob(
    encoder: ElectraEncoder, wordpiece: WordPieceEncoder, head: Optional[Dict[str, torch.Tensor]] = None
) -> bytes:
    """The blob of an encoder, its vocabulary and optionally a task head's tensors (kept apart,
    under ``head``, so an encoder-only blob is byte-for-byte what it always was)."""
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    msg: Dict[str, Any] = {
        "config": encoder.config.to_hf_dict(encoder.kind),
        "vocab": wordpiece.vocab,
        "tokenizer": wordpiece.tokenizer_config(),
        "weights": save_safetensors(state),
    }
    if head is not None:
        msg["head"] = save_safetensors({k: v.detach().cpu().contiguous() for k, v in head.items()})
    msg["sha256"] = _checksum(msg)
    return srsly.msgpack_dumps(msg)


def _checksum(msg: Dict[str, Any]) -> str:
    """SHA-256 over the config, vocabulary and tokenizer settings (as canonical JSON) and the
    weight bytes, each length-prefixed so no two different contents hash alike."""
    meta = json.dumps([msg["config"], msg["vocab"], msg["tokenizer"]], sort_keys=True).encode("utf8")
    digest = hashlib.sha256()
    parts = [meta, bytes(msg["weights"])] + ([bytes(msg["head"])] if "head" in msg else [])
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def deserialize_windowed_encoder(
    module: Optional[WindowedEncoder], data: bytes, device: torch.device
) -> WindowedEncoder:
    encoder, wordpiece, _ = deserialize_encoder_blob(data)
    return WindowedEncoder(encoder, wordpiece).to(device)


HeadShapes = Callable[[ElectraConfig], Dict[str, Tuple[int, ...]]]


def deserialize_encoder_blob(
    data: bytes, head_shapes: Optional[HeadShapes] = None
) -> Tuple[ElectraEncoder, WordPieceEncoder, Dict[str, torch.Tensor]]:
    """Encoder, vocabulary and head tensors of a blob, each checked before anything is built.
    ``head_shapes(config)`` gives the head tensors a blob must hold (None: no head)."""
    try:
        return _checked_encoder(data, head_shapes)
    except (FileProblem, VocabError) as err:
        raise CheckpointError(f"{str(err).rstrip('.')}. {_FIX}") from None


def _checked_encoder(data: bytes, head_shapes: Optional[HeadShapes] = None):
    with reading(SOURCE):
        msg = srsly.msgpack_loads(data)
        if not isinstance(msg, dict):
            raise ValueError("not a msgpack map")
        config_data, vocab, settings, weights = msg["config"], msg["vocab"], msg["tokenizer"], msg["weights"]
        if not (isinstance(config_data, dict) and isinstance(settings, dict) and isinstance(weights, bytes)
                and isinstance(vocab, list) and all(isinstance(piece, str) for piece in vocab)):
            raise ValueError("config, vocab, tokenizer or weights have the wrong type")
    if msg.get("sha256") != _checksum(msg):
        raise FileProblem(
            f"The checksum of {SOURCE} does not match its content: the file was changed after "
            "saving (a flipped bit on disk or an edit)"
        )
    with reading(SOURCE):
        config = ElectraConfig.from_hf_dict(config_data)
        wordpiece = WordPieceEncoder(
            vocab,
            lowercase=bool(settings["do_lower_case"]),
            strip_accents=settings["strip_accents"],
            tokenize_chinese_chars=bool(settings["tokenize_chinese_chars"]),
        )
    wordpiece.check_fits(config.vocab_size, f"The vocabulary of {SOURCE}")
    header = safetensors_header_from_bytes(weights, SOURCE)
    check_dtypes(header, SOURCE, _NOTHING_IGNORED)
    n_layers = layer_count(header, _LAYER)
    if n_layers != config.num_hidden_layers:
        raise FileProblem(f"{SOURCE} has {n_layers} layers of weights but its config says {config.num_hidden_layers}")
    state = _checked_tensors(weights, header, our_shapes(config, "encoder"), "weights")
    head: Dict[str, torch.Tensor] = {}
    if head_shapes is not None:
        head = _checked_head(msg.get("head"), head_shapes(config))
    encoder = ElectraEncoder(config)
    encoder.load_state_dict({k: v.float() for k, v in state.items()})
    return encoder, wordpiece, head


def _checked_head(data: Any, expected: Dict[str, Tuple[int, ...]]) -> Dict[str, torch.Tensor]:
    if not isinstance(data, bytes):
        raise FileProblem(f"{SOURCE} has no task-head weights")
    header = safetensors_header_from_bytes(data, SOURCE)
    check_dtypes(header, SOURCE, _NOTHING_IGNORED)
    return {k: v.float() for k, v in _checked_tensors(data, header, expected, "head weights").items()}


def _checked_tensors(data: bytes, header, expected: Dict[str, Tuple[int, ...]], what: str) -> Dict[str, torch.Tensor]:
    """Names and shapes from the (already dtype-checked) header against ``expected``, then the
    tensors themselves, refused when not finite: the same checks for the encoder and a head."""
    if set(header) != set(expected):
        odd = sorted(set(header) ^ set(expected))
        raise FileProblem(f"{SOURCE} has missing or unexpected {what}: {', '.join(odd[:6])}")
    compare_shapes(expected, {k: shape for k, (_, shape) in header.items()}, "its config", SOURCE)
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError) as err:
        raise FileProblem(f"{SOURCE} has unreadable {what} ({err})") from None
    check_finite(tensors.items(), SOURCE)
    return tensors
