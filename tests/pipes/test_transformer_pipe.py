"""electra_transformer: exact vectors, windows, listeners, serialisation, odd documents."""
import shutil
import warnings

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc

from spacy_electra.layers.torch_encoder import get_encoder
from spacy_electra.windows import check_window, window_starts

from ..conftest import trf_config, BASE_PIECES, make_hf_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "ckpt"
    make_hf_checkpoint(path, "ElectraForPreTraining")
    return path


def make_nlp(checkpoint, **model):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint), **model)})
    return nlp


def test_vectors_equal_hf_for_doc_in_one_window(checkpoint):
    from transformers import ElectraModel

    nlp = make_nlp(checkpoint)
    nlp.initialize()
    doc = nlp("The new cafe in Paris , London and York city .")
    data = doc._.trf_data
    ids = [2] + data.wordpieces.input_ids[0].tolist() + [3]
    hf = ElectraModel.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        expected = hf(torch.tensor([ids])).last_hidden_state[0, 1:-1].numpy()
    ours = data.model_output.last_hidden_state[0]
    first = np.cumsum(data.align.lengths) - data.align.lengths
    np.testing.assert_allclose(ours[data.align.dataXd[first]], expected[first], atol=1e-5)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    np.testing.assert_allclose(data.model_output["cls_vectors"][0], hf(torch.tensor([ids])).last_hidden_state[0, 0].detach().numpy(), atol=1e-5)


def test_overlapping_windows_average_and_cover_every_piece(checkpoint):
    """A doc longer than one window: each piece gets the mean of the windows that saw it."""
    from transformers import ElectraModel

    nlp = make_nlp(checkpoint, window=8, stride=4)
    nlp.initialize()
    words = ("the city of london and the new york cafe was in paris " * 3).split()
    doc = nlp(Doc(nlp.vocab, words=words))
    vectors = doc._.trf_data.model_output.last_hidden_state[0]
    ids = doc._.trf_data.wordpieces.input_ids[0]
    n = len(ids)
    hf = ElectraModel.from_pretrained(checkpoint).eval()
    sums, counts = np.zeros_like(vectors), np.zeros(n)
    for start in window_starts(n, 8, 4):
        window_ids = [2] + ids[start : start + 8].tolist() + [3]
        with torch.no_grad():
            out = hf(torch.tensor([window_ids])).last_hidden_state[0, 1:-1].numpy()
        sums[start : start + 8] += out
        counts[start : start + 8] += 1
    assert counts.min() >= 1
    np.testing.assert_allclose(vectors, sums / counts[:, None], atol=1e-5)


@pytest.mark.parametrize("window,stride", [(8, 5), (8, 4), (8, 8), (128, 96)])
def test_window_starts_cover_everything_no_more_often_than_the_stride_requires(window, stride):
    """Every piece is covered; windows sit on the stride's grid and the last one ends at the
    doc's end, so no piece is encoded more often than ceil(window / stride) times and the
    windows hold at most window - stride more pieces than the doc (the overlap)... per window."""
    for n in range(0, 3 * window + 7):
        starts = window_starts(n, window, stride)
        coverage = np.zeros(n, dtype=int)
        for s in starts:
            coverage[s : s + window] += 1
        assert (coverage >= 1).all()
        assert coverage.max(initial=0) <= -(-window // stride)
        assert starts == [k * stride for k in range(len(starts))]
        if n:
            assert starts[-1] + window >= n and (len(starts) == 1 or starts[-2] + window < n)  # no spare window


@pytest.mark.parametrize(
    "window,stride,message",
    [(128, 50, "Raise stride to at least 64"), (128, 200, "Lower stride"), (600, 400, "Lower window")],
)
def test_window_config_is_validated_when_built(checkpoint, window, stride, message):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=message):
        nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint), window=window, stride=stride)})


def test_window_larger_than_checkpoint_positions(tmp_path):
    checkpoint = tmp_path / "short"
    make_hf_checkpoint(checkpoint, max_position_embeddings=64)
    with pytest.raises(ValueError, match="at most max_position_embeddings - 2 = 62"):
        check_window(63, 40, 64)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint), window=100, stride=60)})  # nothing read yet
    with pytest.raises(ValueError, match="= 62 pieces"):
        nlp.initialize()


def test_backprop_matches_finite_differences(checkpoint):
    """The gradient through windowing + averaging equals finite differences of the thinc output."""
    nlp = make_nlp(checkpoint, window=6, stride=3)
    nlp.initialize()
    model = nlp.get_pipe("electra_transformer").model
    module = get_encoder(model)
    docs = [nlp.make_doc("the city of london and the new york cafe"), nlp.make_doc("paris is new")]
    outputs, backprop = model.begin_update(docs)
    rng = np.random.default_rng(0)
    d_outputs = []
    for out in outputs:
        grad = out.model_output.last_hidden_state * 0 + rng.normal(size=out.model_output.last_hidden_state.shape).astype("f")
        d_outputs.append(type(out)(wordpieces=out.wordpieces, model_output={"last_hidden_state": grad}, align=out.align))
    backprop(d_outputs)
    param = module.encoder.layers[0].intermediate.bias
    analytic = param.grad.clone()

    def objective():
        outs = model.predict(docs)
        return sum(float((o.model_output.last_hidden_state * d.model_output["last_hidden_state"]).sum()) for o, d in zip(outs, d_outputs))

    eps = 1e-3
    for k in range(4):
        with torch.no_grad():
            param[k] += eps
        up = objective()
        with torch.no_grad():
            param[k] -= 2 * eps
        down = objective()
        with torch.no_grad():
            param[k] += eps
        assert abs((up - down) / (2 * eps) - float(analytic[k])) < 2e-2 * max(1.0, abs(float(analytic[k])))


def test_long_document_and_giant_token_no_truncation_no_warnings(checkpoint):
    nlp = make_nlp(checkpoint, window=32, stride=24, max_batch_items=256)
    nlp.add_pipe("tagger", config={"model": {"tok2vec": {"@architectures": "spacy_electra.ElectraListener.v1"}}})
    nlp.get_pipe("tagger").add_label("X")
    nlp.initialize()
    words = (["the", "city", "of", "paris", "\n", "a.b.c.d"] * 3400)[:20000]
    giant = "x" * 5000
    dotted = ".".join(["ab"] * 2500)  # 5,000 characters that split into 5,000 pieces
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        long_doc = nlp(Doc(nlp.vocab, words=words))
        odd_doc = nlp(Doc(nlp.vocab, words=["the", giant, dotted, "city"]))
    for doc in (long_doc, odd_doc):
        data = doc._.trf_data
        assert sum(data.align.lengths) == data.model_output.last_hidden_state.shape[1]
        for token, n in zip(doc, data.align.lengths):
            assert (n == 0) == token.is_space
    assert long_doc._.trf_data.align.lengths.sum() > 20000
    lengths = odd_doc._.trf_data.align.lengths.tolist()
    assert lengths[:2] == [1, 1]  # the 5,000-character word is one [UNK], as in BERT
    assert lengths[2] > 5000  # every piece of the dotted token is kept, across many windows
    assert all(t.tag_ == "X" for t in long_doc if not t.is_space)


def test_roundtrip_to_disk_offline_after_checkpoint_deleted(checkpoint, tmp_path):
    nlp = make_nlp(checkpoint)
    nlp.initialize()
    text = "The new cafe in Paris"
    before = nlp(text)._.trf_data.model_output.last_hidden_state
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(checkpoint)
    files = {p.name for p in (tmp_path / "pipeline" / "electra_transformer").iterdir()}
    assert "model" in files
    loaded = spacy.load(tmp_path / "pipeline")
    after = loaded(text)._.trf_data.model_output.last_hidden_state
    np.testing.assert_array_equal(before, after)
    # to_bytes / from_bytes round trip too
    data = loaded.to_bytes()
    fresh = spacy.blank("en")
    fresh.add_pipe("electra_transformer", config={"model": trf_config("/nonexistent")})
    fresh.from_bytes(data)
    np.testing.assert_array_equal(fresh(text)._.trf_data.model_output.last_hidden_state, before)


def test_saved_weights_are_not_pickled(checkpoint, tmp_path):
    nlp = make_nlp(checkpoint)
    nlp.initialize()
    nlp.to_disk(tmp_path / "p")
    blob = (tmp_path / "p" / "electra_transformer" / "model").read_bytes()
    assert b"torch._utils" not in blob and b"_rebuild_tensor" not in blob
    assert b"__metadata__" in blob or b"safetensors" in blob or b'"F32"' in blob


def test_uninitialized_use_says_what_to_do(checkpoint):
    nlp = make_nlp(checkpoint)
    with pytest.raises(ValueError, match="nlp.initialize"):
        nlp("text")


def test_missing_default_checkpoint_explains(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer")
    with pytest.raises(ValueError, match="checkpoint"):
        nlp.initialize()


def test_empty_and_whitespace_docs(checkpoint):
    nlp = make_nlp(checkpoint)
    nlp.add_pipe("tagger", config={"model": {"tok2vec": {"@architectures": "spacy_electra.ElectraListener.v1"}}})
    nlp.get_pipe("tagger").add_label("X")
    nlp.initialize()
    docs = list(nlp.pipe(["", "   ", "the city", "\n\n"]))
    assert len(docs[0]) == 0
    assert docs[2][0].tag_ == "X"


def test_packing_separates_short_rows_when_that_saves_padding():
    """pack_by_length: every row once, each group within the budget (a row over it alone) and at
    most MAX_GROUP_ROWS rows, and the cuts minimise padded positions + CHUNK_OVERHEAD per group:
    a doc's short last windows no longer ride in a group padded to the full window."""
    import random

    from spacy_electra.windows import CHUNK_OVERHEAD, MAX_GROUP_ROWS, pack_by_length

    def cost(groups, lengths):
        return sum(len(g) * max(lengths[i] for i in g) + CHUNK_OVERHEAD for g in groups)

    def filled(lengths, budget):  # the earlier packing: fill each group up to the budget
        order, groups = sorted(range(len(lengths)), key=lambda i: lengths[i]), []
        for i in order:
            if groups and (len(groups[-1]) + 1) * lengths[i] <= budget:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    lengths = [130] * 10 + [40, 20]
    assert pack_by_length(lengths, 4096) == [[11, 10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.choice([130, 130, 130, rng.randint(3, 130)]) for _ in range(rng.randint(0, 300))] + [5000]
        groups = pack_by_length(lengths, 4096)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        for g in groups:
            assert len(g) <= MAX_GROUP_ROWS and (len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 4096)
        assert cost(groups, lengths) <= cost(filled(lengths, 4096), lengths)
