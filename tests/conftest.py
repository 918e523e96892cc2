"""Fixtures that build tiny random HF ELECTRA checkpoints; no hub, no shared data."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, List, TypeVar

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

# A small but real vocabulary: specials, characters, and common word pieces.
BASE_PIECES = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-/@#&%$")
    + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    + ["the", "a", "of", "and", "to", "in", "is", "was", "he", "she", "it", "new", "york",
       "london", "paris", "city", "cafe", "##s", "##ing", "##ed", "##er", "##ly", "http", "www",
       "com", "##com", "u", "##n", "The", "New", "York", "Paris", "é", "ü", "中", "国", "日", "本"]
)


def hf_config(**overrides):
    from transformers import ElectraConfig as HFConfig

    values = dict(
        vocab_size=len(BASE_PIECES), embedding_size=16, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=48, max_position_embeddings=512,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, hidden_act="gelu",
    )
    values.update(overrides)
    return HFConfig(**values)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (LayerNorms and biases included) so a mis-mapped tensor shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def write_vocab(directory: Path, lowercase: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(BASE_PIECES) + "\n")
    (directory / "tokenizer_config.json").write_text(
        '{"do_lower_case": %s, "tokenizer_class": "ElectraTokenizer"}' % ("true" if lowercase else "false")
    )


def make_hf_checkpoint(
    directory: Path, cls_name: str = "ElectraForPreTraining", seed: int = 0, random_all: bool = True, **config
):
    """``random_all`` randomises every tensor (for parity tests); otherwise HF's own init
    (LayerNorm at 1, normal(0, 0.02) weights), which trains like a real model."""
    import transformers

    cls = getattr(transformers, cls_name)
    torch.manual_seed(seed)
    model = cls(hf_config(**config)).eval()
    if random_all:
        randomize(model, seed)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    model.save_pretrained(directory, safe_serialization=True)
    write_vocab(directory)
    return model


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    """No test reaches the internet: the Hugging Face Hub is offline unless a test (the fake-hub
    tests) sets its own endpoint and clears this."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


T = TypeVar("T")


def run_in_threads(work: Callable[[int], T], n: int) -> List[T]:
    """``[work(0), ..., work(n - 1)]``, each on its own thread, all started before any is joined
    (so they really overlap); re-raises the first exception a thread raised."""
    results: List[T] = [None] * n  # type: ignore[list-item]
    errors: List[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest, and do not fight other processes for cores, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def padded_batch(vocab_size: int, lengths=(11, 7, 3), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, vocab_size, (n,), generator=gen)
        ids[row, 0], ids[row, n - 1] = 2, 3
        mask[row, :n] = 1
    types = (torch.arange(width)[None, :] > width // 2).long() * mask
    return ids, mask, types


ENCODER_SETTINGS = ("checkpoint", "all_layers", "frozen", "layer_lr_decay", "mixed_precision", "grad_scaler_config", "inference")
WINDOW_SETTINGS = ("window", "stride", "max_batch_items")


def trf_config(checkpoint=None, **settings) -> dict:
    """Overrides for an ``ElectraTransformer.v1`` model config from flat settings: the encoder's
    go to its ``encoder`` node, the window sizes to ``with_windows``."""
    if checkpoint is not None:
        settings["checkpoint"] = str(checkpoint)
    unknown = set(settings) - set(ENCODER_SETTINGS) - set(WINDOW_SETTINGS)
    assert not unknown, f"not an ElectraTransformer.v1 setting: {unknown}"
    config = {}
    encoder = {k: v for k, v in settings.items() if k in ENCODER_SETTINGS}
    windows = {k: v for k, v in settings.items() if k in WINDOW_SETTINGS}
    if encoder:
        config["encoder"] = encoder
    if windows:
        config["with_windows"] = windows
    return config


def trf_architecture(checkpoint, **settings) -> dict:
    """A whole ``ElectraTransformer.v1`` config block (every node named), from flat settings."""
    config = trf_config(checkpoint, **settings)
    return {
        "@architectures": "spacy_electra.ElectraTransformer.v1",
        "encoder": {"@architectures": "spacy_electra.TorchEncoder.v1", **config["encoder"]},
        "piece_encoder": {"@architectures": "spacy_electra.WordPieceEncoder.v1"},
        "with_windows": {"@architectures": "spacy_electra.with_strided_windows.v1", **config.get("with_windows", {})},
        "with_whitespace": {"@architectures": "spacy_electra.with_non_ws_tokens.v1"},
    }
