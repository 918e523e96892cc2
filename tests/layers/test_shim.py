"""ElectraShim's optimizer step: weights updated in place, so a training run keeps a constant
number of live tensors (thinc's PyTorchShim rebinds every parameter each step to a tensor made
from a view of the previous one: a chain that grew by one tensor per parameter per update), with
the same weights as thinc's step, with and without layer-wise learning-rate decay."""
import copy
import gc
import random
import warnings

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam, PyTorchShim

from spacy_electra import layers  # noqa: F401 (registers the nodes before entry points exist)
from spacy_electra.layers.shim import ElectraShim
from spacy_electra.pipes import textcat as _textcat  # noqa: F401

from ..conftest import make_hf_checkpoint, trf_architecture

WORDS = "the city of london paris new york cafe".split()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("shim") / "disc"
    make_hf_checkpoint(path, "ElectraForPreTraining", random_all=False)
    return path


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on torch.distributed.reduce_op warns
        warnings.simplefilter("ignore", FutureWarning)
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


@pytest.mark.parametrize("layer_lr_decay", [1.0, 0.8])
def test_training_keeps_the_number_of_live_tensors(checkpoint, layer_lr_decay):
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("electra_textcat", config={"model": {
        "@architectures": "spacy_electra.DocClassifier.v1",
        "tok2vec": trf_architecture(checkpoint, layer_lr_decay=layer_lr_decay),
    }})
    for label in ("A", "B"):
        textcat.add_label(label)
    rnd = random.Random(0)
    examples = []
    for _ in range(24):
        text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(2, 30)))  # varying shapes
        positive = rnd.random() < 0.5
        examples.append(Example.from_dict(nlp.make_doc(text), {"cats": {"A": float(positive), "B": float(not positive)}}))
    optimizer = nlp.initialize(lambda: examples)
    (shim,) = [s for node in textcat.model.walk() for s in node.shims if isinstance(s, ElectraShim)]
    before = [p.detach().clone() for p in shim.module.parameters()]

    def update(n):
        for i in range(n):
            nlp.update(examples[(4 * i) % 24:(4 * i) % 24 + 4], sgd=optimizer, drop=0.1)

    update(2)
    warm = live_tensors()
    update(8)
    assert live_tensors() == warm
    after = [p.detach() for p in shim.module.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "the encoder trains"


def _step(shim, module, grads, optimizer) -> None:
    for param, grad in zip(module.parameters(), grads):
        param.grad = grad.clone()
    shim.finish_update(optimizer)


def test_step_equals_thinc_pytorch_shims():
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4))
    theirs = copy.deepcopy(ours)
    our_shim, their_shim = ElectraShim(ours), PyTorchShim(theirs)
    their_shim.id = our_shim.id  # one optimizer state per (id, name) key: give both the same keys
    our_opt, their_opt = Adam(0.01, L2=0.01, grad_clip=1.0), Adam(0.01, L2=0.01, grad_clip=1.0)
    for _ in range(3):
        grads = [torch.randn_like(p) for p in ours.parameters()]
        _step(our_shim, ours, grads, our_opt)
        _step(their_shim, theirs, grads, their_opt)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-7)
        assert a.grad is not None and not a.grad.any()  # zeroed for the next step, as thinc does


def test_an_optimizer_that_returns_new_arrays_is_copied_in():
    module = torch.nn.Linear(3, 2)
    start = [p.detach().clone() for p in module.parameters()]
    shim = ElectraShim(module)

    def sgd(key, weights, gradient, *, lr_scale=1.0):
        return weights - 0.5 * gradient, np.zeros_like(gradient)  # new arrays, not in place

    grads = [torch.ones_like(p) for p in module.parameters()]
    _step(shim, module, grads, sgd)
    for param, before in zip(module.parameters(), start):
        assert torch.allclose(param.detach(), before - 0.5)
