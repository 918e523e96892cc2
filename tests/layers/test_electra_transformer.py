"""ElectraTransformer.v1, composed of registered nodes: outputs equal HF's ElectraModel run
window by window and averaged, gradients match finite differences, the checked encoder blob,
a config with swapped nodes trains, listeners and replace_listeners, the shipped configs."""
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model
from transformers.utils import ModelOutput

from spacy_electra import layers  # noqa: F401 (registers the nodes before entry points exist)
from spacy_electra.layers.types import PieceBatch, TokenBatch
from spacy_electra.windows import window_starts
from spacy_electra.layers.torch_encoder import encoder_node, get_encoder
from spacy_electra.checkpoint.blob import deserialize_encoder_blob
from spacy_electra.pipes import ner as _ner  # noqa: F401

from ..conftest import make_hf_checkpoint
from .test_listeners_training import toy_treebank

CONFIGS = Path(__file__).parents[2] / "configs"
TEXTS = [
    "The new cafe in Paris , London and York city was a cafe in the city of London .",
    "a york is the paris .",
    "  ",
    "",
    "the  city\n\nis a city .  ",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("compose") / "disc"
    make_hf_checkpoint(path, "ElectraForPreTraining")
    return path


def v2_config(checkpoint, *, window=8, stride=6, max_batch_items=4096, piece_encoder=None, **encoder):
    """The whole ElectraTransformer.v1 config, every node named."""
    return {
        "@architectures": "spacy_electra.ElectraTransformer.v1",
        "encoder": {"@architectures": "spacy_electra.TorchEncoder.v1", "checkpoint": str(checkpoint), **encoder},
        "piece_encoder": piece_encoder or {"@architectures": "spacy_electra.WordPieceEncoder.v1"},
        "with_windows": {
            "@architectures": "spacy_electra.with_strided_windows.v1",
            "window": window, "stride": stride, "max_batch_items": max_batch_items,
        },
        "with_whitespace": {"@architectures": "spacy_electra.with_non_ws_tokens.v1"},
    }


def built(config) -> Model:
    model = registry.resolve({"model": config})["model"]
    model.initialize()
    return model


def docs_of(texts):
    nlp = spacy.blank("en")
    return [nlp.make_doc(text) for text in texts]


def assert_same_data(a: TransformerData, b: TransformerData):
    assert a.wordpieces.strings == b.wordpieces.strings
    np.testing.assert_array_equal(a.wordpieces.input_ids, b.wordpieces.input_ids)
    np.testing.assert_array_equal(a.align.dataXd, b.align.dataXd)
    np.testing.assert_array_equal(a.align.lengths, b.align.lengths)
    assert list(a.model_output.keys()) == list(b.model_output.keys())
    for key in a.model_output:
        x, y = a.model_output[key], b.model_output[key]
        for u, v in zip(x, y) if key == "hidden_states" else [(x, y)]:
            assert u.shape == v.shape, key
            np.testing.assert_allclose(u, v, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("all_layers", [False, True])
def test_forward_equals_hf_window_by_window(checkpoint, all_layers):
    """Several windows per doc, chunks of a few windows, whitespace tokens, a whitespace-only doc
    and an empty doc: every piece vector is the mean of HF ElectraModel's outputs for the windows
    ``[CLS] window [SEP]`` that saw it (all layers too), every [CLS] vector HF's."""
    import transformers

    hf = transformers.ElectraModel.from_pretrained(checkpoint).eval()
    model = built(v2_config(checkpoint, max_batch_items=30, all_layers=all_layers))
    vocab = get_encoder(model).wordpiece
    docs = docs_of(TEXTS)
    outputs = model.predict(docs)
    assert len(outputs[0].model_output["cls_vectors"]) > 1  # the long doc spans several windows
    assert outputs[2].model_output["last_hidden_state"].shape[1] == 1  # the zero row of "  "
    for doc, data in zip(docs, outputs):
        ids = vocab.encode([t.text for t in doc if not t.is_space]).ids
        n = len(ids)
        if n == 0:
            continue
        layers = len(data.model_output["hidden_states"]) if all_layers else 1
        sums, counts = np.zeros((layers, n, 32)), np.zeros(n)
        cls = []
        for start in window_starts(n, 8, 6):
            end = min(start + 8, n)
            window = torch.tensor([[vocab.cls_id, *ids[start:end], vocab.sep_id]])
            with torch.no_grad():
                out = hf(input_ids=window, output_hidden_states=True)
            states = out.hidden_states if all_layers else (out.last_hidden_state,)
            for layer, state in enumerate(states):
                sums[layer, start:end] += state[0, 1:-1].numpy()
            counts[start:end] += 1
            cls.append(out.last_hidden_state[0, 0].numpy())
        expected = sums / counts[None, :, None]
        np.testing.assert_allclose(data.model_output["last_hidden_state"][0], expected[-1], atol=2e-5)
        np.testing.assert_allclose(data.model_output["cls_vectors"], np.stack(cls), atol=2e-5)
        if all_layers:
            for layer, state in enumerate(data.model_output["hidden_states"]):
                np.testing.assert_allclose(state[0], expected[layer], atol=2e-5)


def shifted_starts(n, window, stride):
    """The earlier layout: the last window shifted back to hold a full window."""
    return [] if n == 0 else [0] if n <= window else [*range(0, n - window, stride), n - window]


def test_the_grid_layout_changes_only_the_last_window(checkpoint, monkeypatch):
    """Windows on the stride's grid (0, 6, 12... for window 8 / stride 6) end at the doc's end.
    Against the earlier layout, piece vectors before the last window are identical, the
    last window's pieces get the overlap average of the grid's windows (checked against HF
    above), and fewer pieces are encoded."""
    import spacy_electra.windows as windows

    model = built(v2_config(checkpoint))
    texts = [" ".join(["the city of london and paris ."] * k) for k in (2, 3, 5)]
    grid = model.predict(docs_of(texts))
    monkeypatch.setattr(windows, "window_starts", shifted_starts)
    shifted = model.predict(docs_of(texts))
    changed = 0
    for a, b in zip(grid, shifted):
        n = a.model_output["last_hidden_state"].shape[1]
        assert n > 8  # several windows
        new, old = window_starts(n, 8, 6), shifted_starts(n, 8, 6)
        assert new == list(range(0, 6 * len(new), 6)) and len(new) == len(old)
        assert sum(min(s + 8, n) - s for s in new) <= sum(min(s + 8, n) - s for s in old)
        away = min(new[-1], old[-1])  # pieces before both layouts' last windows
        np.testing.assert_array_equal(a.model_output["last_hidden_state"][0, :away],
                                      b.model_output["last_hidden_state"][0, :away])
        if new != old:
            changed += 1
            assert sum(min(s + 8, n) - s for s in new) < sum(min(s + 8, n) - s for s in old)
            assert not np.allclose(a.model_output["last_hidden_state"][0, -1], b.model_output["last_hidden_state"][0, -1])
    assert changed >= 2


def test_encoder_gradient_matches_finite_differences(checkpoint):
    """Backprop through whitespace handling, windows, overlap averaging and chunking gives the
    gradient of sum(outputs * d_outputs), checked against central differences on a few weights."""
    model = built(v2_config(checkpoint, max_batch_items=30))
    docs = docs_of(TEXTS)
    outputs, backprop = model.begin_update(docs)
    rng = np.random.default_rng(0)
    d_out = [
        TransformerData(
            wordpieces=data.wordpieces, align=data.align,
            model_output=ModelOutput({k: rng.normal(size=v.shape).astype("float32") for k, v in data.model_output.items()}),
        )
        for data in outputs
    ]
    backprop(d_out)
    module = get_encoder(model)

    def objective() -> float:
        total = 0.0
        for data, grad in zip(model.predict(docs), d_out):
            for key in ("last_hidden_state", "cls_vectors"):
                total += float((data.model_output[key].astype("float64") * grad.model_output[key]).sum())
        return total

    params = dict(module.named_parameters())
    assert all(p.grad is not None for p in params.values())
    for name, index in [("encoder.layers.0.intermediate.weight", (3, 5)), ("encoder.layers.1.attention.qkv.weight", (40, 7)),
                        ("encoder.embeddings.word.weight", (7, 2))]:
        weight = params[name]
        eps = 1e-2
        with torch.no_grad():
            weight[index] += eps
            up = objective()
            weight[index] -= 2 * eps
            down = objective()
            weight[index] += eps
        numeric = (up - down) / (2 * eps)
        assert abs(numeric - float(weight.grad[index])) <= 2e-2 * max(1.0, abs(numeric)), name


def test_encoder_blob_is_the_checked_one(checkpoint):
    model = built(v2_config(checkpoint, layer_lr_decay=0.8))
    shim = encoder_node(model).shims[0]
    assert shim.layer_lr_decay == 0.8
    # The blob's content is the checked one of checkpoint/blob.py.
    module_bytes = shim._serialize_model(get_encoder(model))
    encoder, wordpiece, _ = deserialize_encoder_blob(module_bytes)
    assert wordpiece.vocab == get_encoder(model).wordpiece.vocab
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), get_encoder(model).encoder.state_dict().values()))


def tagger_pipeline(model_config, examples=None):
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": model_config})
    nlp.add_pipe("tagger", config={"model": {"tok2vec": {"@architectures": "spacy_electra.ElectraListener.v1"}}})
    examples = examples or toy_treebank(12, vocab=nlp.vocab)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    return nlp


def test_pipeline_round_trips_through_disk_and_bytes(checkpoint, tmp_path):
    nlp = tagger_pipeline(v2_config(checkpoint))
    texts = ["the city is a cafe .", "  ", "the  london was a york ."]
    before = [doc._.trf_data.model_output["last_hidden_state"] for doc in nlp.pipe(texts)]
    tags = [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.config["components"]["electra_transformer"]["model"]["@architectures"] == "spacy_electra.ElectraTransformer.v1"
    from_bytes = spacy.blank("en").from_config(nlp.config).from_bytes(nlp.to_bytes())
    for other in (loaded, from_bytes):
        assert [[t.tag_ for t in doc] for doc in other.pipe(texts)] == tags
        for a, doc in zip(before, other.pipe(texts)):
            np.testing.assert_array_equal(a, doc._.trf_data.model_output["last_hidden_state"])


def test_frozen_encoder_does_not_change(checkpoint):
    for frozen in (False, True):
        nlp = tagger_pipeline(v2_config(checkpoint, frozen=frozen))
        module = get_encoder(nlp.get_pipe("electra_transformer").model)
        fresh = built(v2_config(checkpoint))
        same = all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), get_encoder(fresh).state_dict().values()))
        assert same == frozen


def test_window_limit_of_the_checkpoint_is_checked_at_initialize(tmp_path):
    make_hf_checkpoint(tmp_path / "short", "ElectraForPreTraining", max_position_embeddings=16)
    model = registry.resolve({"model": v2_config(tmp_path / "short", window=20, stride=16)})["model"]
    with pytest.raises(ValueError, match="max_position_embeddings - 2 = 14"):
        model.initialize()


@registry.architectures("test_compose.NormPieceEncoder.v1")
def norm_piece_encoder():
    """A custom piece encoder: each token's norm (spaCy's "n't" -> "not") instead of its text."""
    def forward(model, X: TokenBatch, is_train):
        return PieceBatch(X.vocab.encode_batch([[t.norm_ for t in tokens] for tokens in X.tokens]), X.vocab), lambda d: X

    return Model("norm_piece_encoder", forward)


CONFIG = """
[paths]
checkpoint = null

[nlp]
lang = "en"
pipeline = ["electra_transformer", "tagger"]

[components]

[components.electra_transformer]
factory = "electra_transformer"

[components.electra_transformer.model]
@architectures = "spacy_electra.ElectraTransformer.v1"

[components.electra_transformer.model.encoder]
@architectures = "spacy_electra.TorchEncoder.v1"
checkpoint = ${paths.checkpoint}
layer_lr_decay = 0.8

[components.electra_transformer.model.piece_encoder]
@architectures = "test_compose.NormPieceEncoder.v1"

[components.electra_transformer.model.with_windows]
@architectures = "spacy_electra.with_strided_windows.v1"
window = 4
stride = 2

[components.electra_transformer.model.with_whitespace]
@architectures = "spacy_electra.with_non_ws_tokens.v1"

[components.tagger]
factory = "tagger"

[components.tagger.model]
@architectures = "spacy.Tagger.v2"

[components.tagger.model.tok2vec]
@architectures = "spacy_electra.ElectraListener.v1"
"""


def test_config_with_swapped_nodes_trains(checkpoint):
    """Swap the piece encoder for a custom one and set other windows: builds, initializes,
    updates, and the swapped nodes are the ones that ran."""
    config = spacy.util.load_config_from_str(CONFIG, interpolate=False)
    config["paths"]["checkpoint"] = str(checkpoint)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    examples = toy_treebank(8, vocab=nlp.vocab)
    optimizer = nlp.initialize(lambda: examples)
    before = get_encoder(nlp.get_pipe("electra_transformer").model).encoder.layers[0].output.weight.detach().clone()
    losses = {}
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, losses=losses)
    after = get_encoder(nlp.get_pipe("electra_transformer").model).encoder.layers[0].output.weight
    assert losses["tagger"] > 0 and not torch.equal(before, after)

    doc = nlp("the city isn't a cafe .")
    vocab = get_encoder(nlp.get_pipe("electra_transformer").model).wordpiece
    assert doc._.trf_data.wordpieces.strings[0] == [vocab.vocab[i] for i in vocab.encode([t.norm_ for t in doc]).ids]
    assert "n't" in [t.text for t in doc] and "not" in [t.norm_ for t in doc]
    n_pieces = doc._.trf_data.model_output["last_hidden_state"].shape[1]
    assert len(doc._.trf_data.model_output["cls_vectors"]) == len(range(0, n_pieces - 4, 2)) + 1


@pytest.mark.parametrize(
    "component,listener,standalone",
    [
        ("tagger", {"@architectures": "spacy_electra.ElectraListener.v1", "pooling": "mean"}, "spacy_electra.ElectraTok2Vec.v1"),
        ("tagger", {"@architectures": "spacy_electra.ElectraScalarMixListener.v1"}, "spacy_electra.ElectraScalarMixTok2Vec.v1"),
        ("electra_ner", {"@architectures": "spacy_electra.ElectraTransformerListener.v1"}, "spacy_electra.ElectraTransformer.v1"),
    ],
)
def test_replace_listeners_of_a_composed_encoder(checkpoint, tmp_path, component, listener, standalone):
    from .test_listener_replacement import annotations, examples_for, scores_of

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": v2_config(checkpoint, all_layers=True)})
    nlp.add_pipe(component, config={"model": {"tok2vec": listener}})
    examples = examples_for(nlp, component)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    before_scores, before = scores_of(nlp, component), annotations(nlp)
    upstream = encoder_node(nlp.get_pipe("electra_transformer").model)

    nlp.replace_listeners("electra_transformer", component, ["model.tok2vec"])
    tok2vec = nlp.config["components"][component]["model"]["tok2vec"]
    assert standalone in (tok2vec["@architectures"], tok2vec.get("encoder", {}).get("@architectures"))
    own = encoder_node(nlp.get_pipe(component).model)
    assert own is not upstream and own.shims[0].id != upstream.shims[0].id  # no shared Adam state
    nlp.remove_pipe("electra_transformer")
    for a, b in zip(before_scores, scores_of(nlp, component)):
        np.testing.assert_array_equal(a, b)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert annotations(loaded) == before


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.cfg") if "@architectures" in p.read_text() and "source =" not in p.read_text()))
def test_shipped_config_loads_and_initializes(checkpoint, name):
    """What `spacy debug config` and `spacy train` do before training: fill, validate, resolve
    the training section, build the pipeline; every shipped config uses ElectraTransformer.v1."""
    from spacy.schemas import ConfigSchemaTraining

    config = spacy.util.load_config(CONFIGS / name, overrides={"paths.checkpoint": str(checkpoint)}, interpolate=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    architectures = [node.name for _, pipe in nlp.components if hasattr(pipe, "model") for node in pipe.model.walk()]
    assert "electra_transformer" in architectures or "electra_span_qa" in architectures
    assert "electra_torch_encoder" in architectures or "electra_span_qa" in architectures


def test_shipped_shared_config_initializes(checkpoint):
    config = spacy.util.load_config(CONFIGS / "ner_shared.cfg", overrides={"paths.checkpoint": str(checkpoint)}, interpolate=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    model = nlp.get_pipe("electra_transformer").model
    assert encoder_node(model).shims[0].layer_lr_decay == 0.8
    words = ["the", "london", "was", "a", "cafe", "."]
    examples = [spacy.training.Example.from_dict(Doc(nlp.vocab, words=words), {"words": words, "entities": ["O", "U-LOC", "O", "O", "O", "O"]})]
    nlp.initialize(lambda: examples)
    assert nlp("the york is a city .")._.trf_data is None  # keep_trf_data = false: read and released
