"""Layer-wise lr decay groups and the benchmarks' reuse of the package's scoring and reading."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from spacy_electra.checkpoint import load_checkpoint
from spacy_electra.pretrain.optim import layer_decay_groups, lr_factor

from ..conftest import make_hf_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import finetune_compare  # noqa: E402


class TaskModel(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 3)
        self.head_norm = nn.LayerNorm(3)


def test_layer_decay_groups_give_each_parameter_its_depths_rate(tmp_path):
    make_hf_checkpoint(tmp_path, num_hidden_layers=3, embedding_size=16, hidden_size=32)
    model = TaskModel(load_checkpoint(tmp_path, kind="encoder"))
    groups = layer_decay_groups(model, lr=1.0, decay=0.5, n_layers=3)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert len(rate) == len(list(model.parameters()))  # every parameter once
    named = dict(model.named_parameters())
    for name, (lr, wd) in {"head.weight": (1.0, 0.01), "head_norm.weight": (1.0, 0.0),
                           "encoder.layers.2.output.weight": (0.5, 0.01), "encoder.layers.0.output.bias": (0.125, 0.0),
                           "encoder.embeddings.word.weight": (0.0625, 0.01), "encoder.projection.weight": (0.0625, 0.01),
                           "encoder.embeddings.layer_norm.weight": (0.0625, 0.0)}.items():
        assert rate[id(named[name])] == (lr, wd), name
    for name, param in named.items():
        lr, wd = rate[id(param)]
        if name.startswith("encoder.layers."):
            assert lr == 0.5 ** (3 - int(name.split(".")[2])), name
        elif name.startswith("encoder."):
            assert lr == 0.5 ** 4, name
        else:
            assert lr == 1.0, name
        assert wd == (0.0 if name.endswith(".bias") or "norm" in name.split(".")[-2] else 0.01), name
    torch.optim.AdamW(groups)  # a valid optimizer spec


def test_lr_factor_warms_up_then_decays_to_zero():
    assert [round(lr_factor(s, 4, 10), 3) for s in (0, 3, 9)] == [0.25, 0.7, 0.1]
    assert lr_factor(10, 4, 10) == 0.0


@pytest.mark.parametrize(
    "pred,gold,f1",
    [
        ([[1, 2, 0, 5]], [[1, 2, 0, 5]], 1.0),  # B-PER I-PER O B-LOC
        ([[1, 0, 0, 5]], [[1, 2, 0, 5]], 0.5),  # PER too short: 1 of 2 right each way
        ([[2, 2, 0, 0]], [[1, 2, 0, 0]], 1.0),  # an I- without B- starts the entity
        ([[1, 4, 0, 0]], [[1, 2, 0, 0]], 0.0),  # I-ORG after B-PER is a new ORG entity
        ([[0, 0]], [[0, 0]], 0.0),
    ],
)
def test_benchmark_span_f1_is_spacys_count(pred, gold, f1):
    assert finetune_compare.span_f1(pred, gold) == pytest.approx(f1)


def test_benchmark_reads_conll_with_the_package_converter(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
                    "Blackburn NNP I-NP I-PER\n")
    assert finetune_compare.read_conll(path) == [(["EU", "rejects"], ["B-ORG", "O"]),
                                                 (["Peter", "Blackburn"], ["B-PER", "I-PER"])]
