"""spaCy components on top of electra_transformer: training, listeners, multiprocessing, packaging."""
import random
import subprocess
import sys

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example

from ..conftest import trf_config, make_hf_checkpoint

NOUNS = ["city", "cafe", "london", "paris", "york"]
VERBS = ["is", "was"]


def toy_treebank(n=36, seed=0, vocab=None):
    """Sentences 'the NOUN VERB a NOUN .' with tags and a dependency tree (VERB is the root)."""
    rng = random.Random(seed)
    vocab = vocab if vocab is not None else spacy.blank("en").vocab
    examples = []
    for _ in range(n):
        words = ["the", rng.choice(NOUNS), rng.choice(VERBS), "a", rng.choice(NOUNS), "."]
        tags = ["DT", "NN", "VBZ", "DT", "NN", "."]
        heads = [1, 2, 2, 4, 2, 2]
        deps = ["det", "nsubj", "ROOT", "det", "attr", "punct"]
        doc = Doc(vocab, words=words)
        examples.append(Example.from_dict(doc, {"words": words, "tags": tags, "heads": heads, "deps": deps}))
    return examples


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "disc"
    make_hf_checkpoint(path, "ElectraForPreTraining", random_all=False)
    return path


def build(checkpoint, component, tok2vec, **trf):
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint), **trf)})
    nlp.add_pipe(component, config={"model": {"tok2vec": tok2vec}})
    return nlp


def train_losses(nlp, examples, component, steps=15):
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01  # a 2-layer, 32-wide model learns faster than spaCy's default
    losses = []
    for _ in range(steps):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step[component])
    return losses


TRF_LISTENER = {
    "@architectures": "spacy-transformers.TransformerListener.v1",
    "grad_factor": 1.0,
    "pooling": {"@layers": "reduce_mean.v1"},
}


def test_spacy_parser_with_spacy_transformers_listener_learns(checkpoint):
    nlp = build(checkpoint, "parser", TRF_LISTENER)
    examples = toy_treebank(vocab=nlp.vocab)
    losses = train_losses(nlp, examples, "parser")
    assert losses[-1] < 0.5 * losses[0], losses
    encoder = nlp.get_pipe("electra_transformer")
    assert encoder.listening_components == ["parser"]
    doc = nlp("the city was a cafe .")
    assert [t.dep_ for t in doc] == ["det", "nsubj", "ROOT", "det", "attr", "punct"]


@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
def test_spacy_tagger_with_electra_listener_learns(checkpoint, pooling):
    listener = {"@architectures": "spacy_electra.ElectraListener.v1", "pooling": pooling}
    nlp = build(checkpoint, "tagger", listener)
    examples = toy_treebank()
    losses = train_losses(nlp, examples, "tagger")
    assert losses[-1] < 0.5 * losses[0], losses
    # The encoder was updated through the listener (its loss entry counts gradient energy).
    assert [t.tag_ for t in nlp("the paris is a york .")] == ["DT", "NN", "VBZ", "DT", "NN", "."]


def test_encoder_weights_change_only_when_not_frozen(checkpoint):
    from spacy_electra.layers.torch_encoder import get_encoder

    listener = {"@architectures": "spacy_electra.ElectraListener.v1"}
    for frozen in (False, True):
        nlp = build(checkpoint, "tagger", listener, frozen=frozen)
        examples = toy_treebank(8)
        optimizer = nlp.initialize(lambda: examples)
        before = get_encoder(nlp.get_pipe("electra_transformer").model).encoder.layers[0].output.weight.detach().clone()
        # The tagger's softmax starts at zero (step 1 sends no gradient down), and spaCy applies
        # an upstream component's gradients at its next finish_update, so look after step 3.
        for _ in range(3):
            nlp.update(examples, sgd=optimizer)
        after = get_encoder(nlp.get_pipe("electra_transformer").model).encoder.layers[0].output.weight.detach()
        assert (not np.allclose(before.numpy(), after.numpy())) == (not frozen)


def test_scalar_mix_listener_trains_its_weights(checkpoint):
    listener = {"@architectures": "spacy_electra.ElectraScalarMixListener.v1"}
    nlp = build(checkpoint, "tagger", listener, all_layers=True)
    examples = toy_treebank(16)
    losses = train_losses(nlp, examples, "tagger", steps=8)
    assert losses[-1] < losses[0]
    mix = next(n for n in nlp.get_pipe("tagger").model.walk() if n.name == "electra_scalar_mix")
    assert mix.get_dim("nL") == 3  # embeddings + 2 layers
    assert not np.allclose(mix.get_param("weights"), 0)


def test_scalar_mix_needs_all_layers(checkpoint):
    listener = {"@architectures": "spacy_electra.ElectraScalarMixListener.v1"}
    with pytest.raises(ValueError, match="all_layers = true"):  # refused when linked
        nlp = build(checkpoint, "tagger", listener)
        nlp.initialize(lambda: toy_treebank(4))


def test_two_listening_heads_share_one_encoder_pass(checkpoint, monkeypatch):
    from spacy_electra.layers import electra_transformer

    nlp = build(checkpoint, "tagger", {"@architectures": "spacy_electra.ElectraListener.v1"})
    nlp.add_pipe("parser", config={"model": {"tok2vec": TRF_LISTENER}, "min_action_freq": 1})
    examples = toy_treebank(12, vocab=nlp.vocab)
    optimizer = nlp.initialize(lambda: examples)
    calls = []
    original = electra_transformer._forward
    monkeypatch.setattr(nlp.get_pipe("electra_transformer").model, "_func", lambda m, X, is_train: (calls.append(1), original(m, X, is_train))[1])
    for _ in range(2):  # step 1: the heads' zero-initialised outputs send no gradient down
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    assert len(calls) == 2  # once per batch, whatever the number of listening heads
    assert losses["tagger"] > 0 and losses["parser"] > 0 and losses["electra_transformer"] > 0


def test_keep_trf_data_false_clears_docs_after_last_listener(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint)), "keep_trf_data": False})
    nlp.add_pipe("tagger", config={"model": {"tok2vec": {"@architectures": "spacy_electra.ElectraListener.v1"}}})
    examples = toy_treebank(8)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    for _ in range(10):
        nlp.update(examples, sgd=optimizer)
    docs = list(nlp.pipe(["the city is a cafe .", "a paris was the york ."]))
    assert all(doc._.trf_data is None for doc in docs)
    assert docs[0][1].tag_ == "NN"
    # Kept by default.
    nlp.get_pipe("electra_transformer").cfg["keep_trf_data"] = True
    nlp.get_pipe("electra_transformer")._mark_releasing_listeners()
    assert nlp("the city")._.trf_data is not None


def test_listener_state_is_not_serialised(checkpoint, tmp_path):
    nlp = build(checkpoint, "tagger", {"@architectures": "spacy_electra.ElectraListener.v1"})
    examples = toy_treebank(8)
    optimizer = nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=optimizer)
    nlp.get_pipe("electra_transformer").update(examples)  # listeners now hold outputs
    listener = nlp.get_pipe("electra_transformer").listeners[0]
    assert listener._outputs is not None
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    loaded_listener = loaded.get_pipe("electra_transformer").listeners[0]
    assert loaded_listener._outputs is None and loaded_listener._batch_id is None
    text = "the city was a cafe ."
    assert [t.tag_ for t in loaded(text)] == [t.tag_ for t in nlp(text)]


def test_pipe_with_two_processes(checkpoint, tmp_path):
    nlp = build(checkpoint, "tagger", {"@architectures": "spacy_electra.ElectraListener.v1"})
    examples = toy_treebank(8)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    for _ in range(4):
        nlp.update(examples, sgd=optimizer)
    texts = ["the city was a cafe .", "a paris is the london .", "the york is a city ."] * 4
    single = [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]
    multi = [[t.tag_ for t in doc] for doc in nlp.pipe(texts, n_process=2, batch_size=3)]
    assert multi == single


@pytest.mark.slow  # builds and installs a wheel
def test_spacy_package_builds_installable_pipeline(checkpoint, tmp_path):
    nlp = build(checkpoint, "tagger", {"@architectures": "spacy_electra.ElectraListener.v1"})
    nlp.initialize(lambda: toy_treebank(4))
    nlp.meta["name"] = "electra_test"
    nlp.to_disk(tmp_path / "pipeline")
    out = tmp_path / "packages"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(tmp_path / "pipeline"), str(out), "--name", "electra_test", "--version", "0.0.1", "--force"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(out.rglob("*.tar.gz")), result.stdout


# -- finite-difference checks of the listeners' backprop ----------------------------------------
def _trf_data(rng, lengths, width=5, n_layers=None):
    from spacy_transformers.data_classes import TransformerData, WordpieceBatch
    from thinc.types import Ragged
    from transformers.utils import ModelOutput

    n = int(sum(lengths))
    layers = [rng.normal(size=(1, n, width)).astype("float32") for _ in range(n_layers or 1)]
    output = ModelOutput(last_hidden_state=layers[-1])
    if n_layers:
        output["hidden_states"] = tuple(layers)
    wordpieces = WordpieceBatch(strings=[["x"] * n], input_ids=np.zeros((1, n), "int32"), attention_mask=np.ones((1, n), "float32"), lengths=[n], token_type_ids=None)
    return TransformerData(wordpieces=wordpieces, model_output=output, align=Ragged(np.arange(n, dtype="int32"), np.asarray(lengths, dtype="int32")))


def _numeric_grad(objective, array, eps):
    grad = np.zeros_like(array, dtype="float64")
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        up = objective()
        array[index] = saved - eps
        down = objective()
        array[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
def test_pooling_backprop_matches_finite_differences(pooling):
    from spacy_electra.layers.listeners import pool_tokens

    rng = np.random.default_rng(0)
    lengths = [2, 0, 1, 3]  # a token without pieces (whitespace) gets a zero vector and no gradient
    X = [_trf_data(rng, lengths)]
    model = pool_tokens(pooling, grad_factor=1.0)
    model.initialize(X=X)
    Y, backprop = model.begin_update(X)
    dY = [rng.normal(size=y.shape).astype("float32") for y in Y]
    analytic = backprop(dY)[0].model_output["last_hidden_state"]
    hidden = X[0].model_output["last_hidden_state"]

    def objective():
        return float(sum((y.astype("float64") * d).sum() for y, d in zip(model.predict(X), dY)))

    np.testing.assert_allclose(analytic, _numeric_grad(objective, hidden, 1e-2), atol=1e-3)


def test_scalar_mix_backprop_matches_finite_differences():
    from spacy_electra.layers.listeners import scalar_mix

    rng = np.random.default_rng(1)
    X = [_trf_data(rng, [1, 2, 1], width=3, n_layers=3)]
    model = scalar_mix()
    model.set_dim("nL", 3)
    model.initialize()
    model.set_param("weights", rng.normal(size=3).astype("float32"))
    model.set_param("gamma", np.asarray([1.3], dtype="float32"))
    Y, backprop = model.begin_update(X)
    dY = rng.normal(size=Y[0].model_output["last_hidden_state"].shape).astype("float32")
    from spacy_transformers.data_classes import TransformerData
    from transformers.utils import ModelOutput

    d_layers = backprop([TransformerData(wordpieces=Y[0].wordpieces, model_output=ModelOutput(last_hidden_state=dY), align=Y[0].align)])
    d_layers = d_layers[0].model_output["hidden_states"]

    def objective():
        return float((model.predict(X)[0].model_output["last_hidden_state"].astype("float64") * dY).sum())

    for name in ("weights", "gamma"):
        param = model.get_param(name)
        np.testing.assert_allclose(model.get_grad(name), _numeric_grad(objective, param, 1e-3), rtol=1e-2, atol=1e-3)
    for layer, d_layer in zip(X[0].model_output["hidden_states"], d_layers):
        np.testing.assert_allclose(d_layer, _numeric_grad(objective, layer, 1e-2), atol=1e-3)
