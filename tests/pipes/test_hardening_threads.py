"""Issue #12 items 1-2: one pipeline shared by threads gives sequential results, and the windowed
encoder's cost is linear in the pieces of a batch."""
import random
import sys

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from torch.utils._pytree import tree_flatten
from torch.utils._python_dispatch import TorchDispatchMode
from spacy.training import Example

from spacy_electra.torch_model import ElectraConfig, ElectraEncoder
from spacy_electra.torch_model.windowed import WindowedEncoder
from spacy_electra.pieces import WordPieceEncoder
from spacy_electra.windows import make_window_batch

from ..conftest import trf_config, BASE_PIECES, make_hf_checkpoint, run_in_threads

WORDS = ["the", "london", "paris", "york", "city", "cafe", "new", "is", "in", "was", "a", "of", "."]


def random_docs(nlp, n, seed):
    rng = random.Random(seed)
    return [Doc(nlp.vocab, words=[rng.choice(WORDS) for _ in range(rng.randint(1, 40))]) for _ in range(n)]


@pytest.fixture(scope="module")
def shared_pipeline(tmp_path_factory):
    """electra_transformer with dropout 0.1 in its config (so a stray train-mode forward shows)
    and two heads listening to it."""
    path = tmp_path_factory.mktemp("threads") / "ckpt"
    make_hf_checkpoint(path, "ElectraForPreTraining", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(path), window=16, stride=12)})
    listener = {"@architectures": "spacy_electra.ElectraTransformerListener.v1", "upstream": "electra_transformer"}
    nlp.add_pipe("electra_ner", config={"model": {"tok2vec": listener}})
    nlp.add_pipe("electra_textcat", config={"model": {"tok2vec": listener}})
    examples = []
    for doc in random_docs(nlp, 8, seed=1):
        ref = doc.copy()
        ref.ents = [Span(ref, 0, 1, label="LOC")]
        ref.cats = {"A": 1.0, "B": 0.0}
        examples.append(Example(doc, ref))
    nlp.initialize(lambda: examples)
    return nlp


def annotations(docs):
    return [
        (
            doc._.trf_data.model_output.last_hidden_state.tobytes(),
            [(e.start, e.end, e.label_) for e in doc.ents],
            sorted(doc.cats.items()),
        )
        for doc in docs
    ]


@pytest.fixture
def frequent_thread_switches():
    """Switch threads every few microseconds so races show within a short test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_threads_sharing_one_pipeline_match_sequential_results(shared_pipeline, frequent_thread_switches):
    nlp = shared_pipeline
    texts = random_docs(nlp, 300, seed=2)
    words = [[t.text for t in d] for d in texts]
    fresh = lambda: [Doc(nlp.vocab, words=w) for w in words]  # noqa: E731
    expected = annotations(nlp.pipe(fresh(), batch_size=8))
    results = run_in_threads(lambda i: annotations(nlp.pipe(fresh(), batch_size=8)), 4)
    for i in range(4):
        different = sum(a != b for a, b in zip(results[i], expected))
        assert different == 0, f"thread {i}: {different} of 300 docs differ from the sequential run"
    # nlp(text) from several threads too, against the same single-thread reference.
    single = [annotations([nlp(d)])[0] for d in fresh()[:40]]
    out = run_in_threads(lambda k: annotations([nlp(fresh()[k])])[0], 40)
    assert out == single


def test_inference_leaves_the_module_mode_alone(shared_pipeline):
    """Prediction must not flip train/eval on the shared torch module (that is what raced)."""
    from spacy_electra.layers.torch_encoder import get_encoder

    module = get_encoder(shared_pipeline.get_pipe("electra_transformer").model)
    module.train()
    shared_pipeline("the city of london")
    assert module.training
    module.eval()
    shared_pipeline("the city of london")
    assert not module.training


class CountsElementsWritten(TorchDispatchMode):
    """Counts the tensor elements every torch operation writes: a measure of work that, unlike
    time, does not depend on what else runs on the machine. An in-place op (``index_add_``)
    writes its source's elements; any other op writes its outputs."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func._schema.name.endswith("_"):  # in place: args[0] is the buffer written into
            written = [a for a in tree_flatten((args[1:], kwargs))[0] if isinstance(a, torch.Tensor)]
        else:
            written = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.elements += sum(t.numel() for t in written)
        return out


def _elements_written(n_pieces, encoder):
    wp = encoder.wordpiece
    rng = np.random.default_rng(0)
    from spacy_electra.pieces import TokenPieces

    ids = rng.integers(5, len(wp.vocab), n_pieces).astype(np.int32)
    pieces = [TokenPieces(ids, np.ones(n_pieces, dtype=np.int32))]
    batch = make_window_batch(pieces, window=8, stride=8, max_batch_items=40, cls_id=wp.cls_id, sep_id=wp.sep_id, pad_id=wp.pad_id)
    chunks = [tuple(torch.from_numpy(a) for a in (c.ids, c.mask, c.target, c.window_index)) for c in batch.chunks]
    inv = torch.from_numpy(batch.inv_counts)
    with torch.no_grad(), CountsElementsWritten() as counter:
        encoder(chunks, batch.n_pieces, sum(batch.doc_windows), inv)
    return counter.elements


def test_windowed_encoder_work_is_linear_in_pieces(one_torch_thread):
    """8x the pieces write 8x the elements (not timed: counted). Many small chunks (4 windows of
    8 pieces each) made the old out-of-place index_add, which copied the whole buffer per chunk,
    quadratic (measured then: x23 the time for x8 the pieces)."""
    config = ElectraConfig(vocab_size=len(BASE_PIECES), embedding_size=8, hidden_size=8, num_hidden_layers=1,
                           num_attention_heads=1, intermediate_size=8, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    encoder = WindowedEncoder(ElectraEncoder(config), WordPieceEncoder(BASE_PIECES)).eval()
    small = _elements_written(2_000, encoder)
    large = _elements_written(16_000, encoder)
    assert large / small < 8.2, f"x8 pieces wrote x{large / small:.1f} the elements"


def test_importing_the_plugin_leaves_forked_children_alone():
    """No import-time fork hook: a forked child of a program that merely imports the plugin keeps
    torch's thread count; the encoder sets one thread only in a child that runs it."""
    import subprocess
    import sys

    code = (
        "import os, torch; torch.set_num_threads(2)\n"
        "import spacy_electra.layers.shim as t\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    n = torch.get_num_threads(); t._one_thread_in_forked_child(); os._exit(10 * n + torch.get_num_threads())\n"
        "_, status = os.waitpid(pid, 0); print(os.waitstatus_to_exitcode(status))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "21", out.stderr
