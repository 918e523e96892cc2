"""The one way out: a model (and optionally its vocabulary and a task head) as an HF folder.

The folder appears complete or not at all (``atomic_folder``): a full disk mid-export never
leaves a new ``config.json`` beside old weights.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from safetensors.torch import save_file
from torch import Tensor

from ..atomic import PathLike, atomic_folder
from ..pieces import WordPieceEncoder
from ..torch_model.encoder import ElectraEncoder
from .hf_names import ours_to_hf


def save_checkpoint(
    model: ElectraEncoder,
    directory: PathLike,
    *,
    vocab: Optional[WordPieceEncoder] = None,
    head_state: Optional[Dict[str, Tensor]] = None,
    config_updates: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``model`` as an HF ELECTRA folder (config.json + model.safetensors) that
    ``transformers`` loads as ElectraForPreTraining / ElectraForMaskedLM / ElectraModel.
    ``vocab`` (a ``WordPieceEncoder``) adds vocab.txt and tokenizer_config.json.

    A fine-tuned task model is written by passing an encoder with ``head_state`` (HF key ->
    tensor, e.g. ``{"qa_outputs.weight": ...}``): the encoder's keys then get the ``electra.``
    prefix that HF task models use, and ``config_updates`` (e.g. ``architectures``, ``id2label``,
    ``label2id``, ``problem_type``) are merged into config.json. An existing folder at
    ``directory`` is replaced whole, only once the new one is complete."""
    directory = Path(directory)
    config = model.config.to_hf_dict(model.kind)
    state = ours_to_hf(model)
    if head_state:
        if model.kind != "encoder":
            raise ValueError("head_state is written next to a bare encoder; pass the encoder (kind='encoder').")
        state = {f"electra.{k}": v for k, v in state.items()}
        for key, value in head_state.items():
            state[key] = value.detach().cpu().contiguous()
    config.update(config_updates or {})
    with atomic_folder(directory) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if vocab is not None:
            vocab.save(tmp)
    return directory
