"""Serialisation of the windowed encoder for Thinc's PyTorchShim: config, vocabulary and
safetensors weights in one msgpack blob, so a saved pipeline needs nothing else (and no pickle)."""
from typing import Optional

import srsly
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..model import ElectraConfig, ElectraEncoder
from ..model.windowed import WindowedEncoder
from ..pieces import WordPieceEncoder


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
