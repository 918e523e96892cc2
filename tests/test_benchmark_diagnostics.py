"""The representation diagnostics behind BENCHMARKS.md's pretraining analysis, checked against
HF's own attention probabilities and hand-made cases."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from spacy_electra.checkpoint import load_checkpoint

from .conftest import BASE_PIECES, make_hf_checkpoint, padded_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from finetune_compare import attention_locality  # noqa: E402


def neighbour_mass(probs: torch.Tensor, mask: torch.Tensor) -> float:
    """Most local head's mean attention on i-1 and i+1, written out by loops (the oracle)."""
    keep = mask.bool()
    best = 0.0
    for head in range(probs.shape[1]):
        total, count = 0.0, 0
        for b in range(probs.shape[0]):
            for i in range(probs.shape[2]):
                if not keep[b, i]:
                    continue
                total += sum(float(probs[b, head, i, j]) for j in (i - 1, i + 1) if 0 <= j < probs.shape[3])
                count += 1
        best = max(best, total / count)
    return best


def test_attention_locality_equals_hf_attention_probabilities(tmp_path):
    hf = make_hf_checkpoint(tmp_path / "ckpt", "ElectraModel", num_hidden_layers=3)
    ours = load_checkpoint(tmp_path / "ckpt", kind="encoder").eval()
    ids, mask, _ = padded_batch(hf.config.vocab_size, lengths=(12, 9, 5))
    with torch.no_grad():
        attentions = hf(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    expected = [neighbour_mass(a, mask) for a in attentions]
    got = attention_locality(ours, ours.encode_layers(ids, mask)[:-1], mask)
    assert len(got) == 3
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-5), (got, expected)


def test_attention_locality_is_one_for_a_head_that_only_sees_its_neighbours(tmp_path):
    """Force layer 0's scores with position-dependent keys: a head whose queries match only the
    adjacent positions' keys puts all its mass there; uniform attention over n tokens gives 2/n."""
    make_hf_checkpoint(tmp_path / "ckpt", "ElectraModel", num_hidden_layers=1, random_all=False)
    ours = load_checkpoint(tmp_path / "ckpt", kind="encoder").eval()
    with torch.no_grad():
        ours.layers[0].attention.qkv.weight.zero_()
        ours.layers[0].attention.qkv.bias.zero_()
    n = 6
    ids = torch.full((1, n), 7)
    mask = torch.ones(1, n, dtype=torch.long)
    layer_inputs = ours.encode_layers(ids, mask)[:-1]
    assert abs(attention_locality(ours, layer_inputs, mask)[0] - (2 * n - 2) / n / n) < 1e-6  # uniform

    # Hand-set scores: a layer input in which token i is e_i, and projections that make token i's
    # query 60 e_i and token j's key the sum of its neighbours' unit vectors, so query i matches
    # only the keys of i-1 and i+1.
    width = ours.config.hidden_size
    heads = ours.config.num_attention_heads
    head_dim = width // heads
    assert head_dim >= n
    x = torch.zeros(1, n, width)
    for i in range(n):
        x[0, i, i] = 1.0
    with torch.no_grad():
        qkv = ours.layers[0].attention.qkv
        qkv.weight.zero_()
        shift = torch.zeros(n, n)
        for i in range(n):
            for j in (i - 1, i + 1):
                if 0 <= j < n:
                    shift[i, j] = 1.0
        qkv.weight[:n, :n] = torch.eye(n) * 60.0  # queries of head 0
        qkv.weight[width : width + n, :n] = shift.T  # keys of head 0: key_j has a 1 at each neighbour i
    locality = attention_locality(ours, [x], mask)[0]
    assert locality > 0.99, locality


def test_finetune_compare_prepares_and_fine_tunes_hand_made_data(tmp_path):
    """The comparison harness end to end on a few hand-written sentences: CoNLL tags land on each
    word's first piece (later pieces and specials ignored), and `run` writes one scored line per
    task, so the harness cannot rot silently between the runs that use it."""
    from finetune_compare import main as compare

    make_hf_checkpoint(tmp_path / "ckpt", "ElectraForPreTraining", random_all=False)
    data = tmp_path / "data"
    (data / "textcat" / "sst2").mkdir(parents=True)
    (data / "ner" / "conll2003").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (data / "textcat" / "sst2" / name).write_text("label\tsentence\n1\tthe city is new\n0\tit was the cafe\n")
    conll = "-DOCSTART- -X- -X- O\n\nParis NNP B-NP B-LOC\ncafes NNS B-NP O\nnew JJ B-ADJP O\n\n"
    for name in ("train.txt", "valid.txt"):
        (data / "ner" / "conll2003" / name).write_text(conll)
    npz = tmp_path / "ft.npz"
    compare(["prepare", "--vocab", str(tmp_path / "ckpt"), "--data", str(data), "--output", str(npz)])
    arrays = np.load(npz)
    assert list(arrays["sst2_train_labels"]) == [1, 0]
    ids, tags = arrays["conll_train_ids"].tolist(), arrays["conll_train_tags"].tolist()
    assert len(ids) == len(tags) and ids[0] == BASE_PIECES.index("[CLS]") and ids[-1] == BASE_PIECES.index("[SEP]")
    assert [BASE_PIECES[i] for i in ids[1:-1]] == ["paris", "cafe", "##s", "new"]
    assert tags == [-100, 5, 0, -100, 0, -100]  # B-LOC, O on "cafe" only, O

    results = tmp_path / "results.jsonl"
    compare(["run", "--data", str(npz), "--init", f"random=random:{tmp_path / 'ckpt'}",
             "--init", f"ckpt={tmp_path / 'ckpt'}", "--seeds", "0", "--device", "cpu", "--output", str(results)])
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert sorted((x["init"], x["task"]) for x in lines) == [("ckpt", "conll"), ("ckpt", "sst2"), ("random", "conll"), ("random", "sst2")]
    assert all(0.0 <= x["score"] <= 1.0 and x["steps"] == 1 for x in lines)
