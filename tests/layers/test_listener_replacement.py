"""nlp.replace_listeners: a component that listened to electra_transformer becomes standalone,
predicts exactly what it predicted while listening, and round-trips through disk and config."""
import numpy as np
import pytest
import spacy
from spacy.training import Example

from spacy_electra.layers import heads as _heads  # noqa: F401 (registers the architectures)
from spacy_electra.layers.torch_encoder import encoder_node
from spacy_electra.pipes import ner as _ner  # noqa: F401

from ..conftest import trf_architecture, trf_config, make_hf_checkpoint
from .test_listeners_training import toy_treebank


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("replace") / "disc"
    make_hf_checkpoint(path, "ElectraForPreTraining", random_all=False)
    return path


LISTENERS = {
    "ElectraListener": ("tagger", {"@architectures": "spacy_electra.ElectraListener.v1", "pooling": "mean"}, "spacy_electra.ElectraTok2Vec.v1"),
    "ElectraScalarMixListener": ("tagger", {"@architectures": "spacy_electra.ElectraScalarMixListener.v1"}, "spacy_electra.ElectraScalarMixTok2Vec.v1"),
    "ElectraTransformerListener": ("electra_ner", {"@architectures": "spacy_electra.ElectraTransformerListener.v1"}, "spacy_electra.ElectraTransformer.v1"),
    "spacy-transformers TransformerListener": (
        "tagger",
        {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0, "pooling": {"@layers": "reduce_mean.v1"}},
        "spacy_electra.ElectraTrfPoolingTok2Vec.v1",
    ),
}
TEXTS = ["the london was a cafe .", "a york is the paris .", "the city is a city ."]


def examples_for(nlp, component):
    examples = toy_treebank(12, vocab=nlp.vocab)
    if component == "electra_ner":
        for eg in examples:
            words = [t.text for t in eg.reference]
            ents = ["U-LOC" if w in ("london", "paris", "york") else "O" for w in words]
            eg.reference.ents = Example.from_dict(eg.predicted.copy(), {"words": words, "entities": ents}).reference.ents
    return examples


def trained_pipeline(checkpoint, component, listener):
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint), all_layers=True)})
    nlp.add_pipe(component, config={"model": {"tok2vec": listener}})
    examples = examples_for(nlp, component)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    for _ in range(4):
        nlp.update(examples, sgd=optimizer)
    return nlp


def scores_of(nlp, component, texts=TEXTS):
    """The component's raw model output on docs processed by everything before it."""
    docs = list(nlp.pipe(texts, disable=[component]))
    return [np.asarray(x) for x in nlp.get_pipe(component).model.predict(docs)]


def annotations(nlp, texts=TEXTS):
    return [([t.tag_ for t in doc], [(e.start, e.end, e.label_) for e in doc.ents]) for doc in nlp.pipe(texts)]


@pytest.mark.parametrize("kind", list(LISTENERS))
def test_replaced_listener_predicts_the_same_and_round_trips(checkpoint, tmp_path, kind):
    component, listener, standalone_arch = LISTENERS[kind]
    nlp = trained_pipeline(checkpoint, component, listener)
    before_scores, before = scores_of(nlp, component), annotations(nlp)

    nlp.replace_listeners("electra_transformer", component, ["model.tok2vec"])

    assert nlp.get_pipe("electra_transformer").listening_components == []
    assert nlp.config["components"][component]["model"]["tok2vec"]["@architectures"] == standalone_arch
    # Standalone now: it needs no upstream (removing electra_transformer changes nothing).
    nlp.remove_pipe("electra_transformer")
    after_scores = scores_of(nlp, component)
    for a, b in zip(before_scores, after_scores):
        np.testing.assert_array_equal(a, b)
    assert annotations(nlp) == before

    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.config["components"][component] == nlp.config["components"][component]
    assert annotations(loaded) == before
    for a, b in zip(before_scores, scores_of(loaded, component)):
        np.testing.assert_array_equal(a, b)


def test_replaced_copy_trains_apart_from_the_shared_encoder(checkpoint):
    """The copy's torch shim has its own optimizer key, so Adam state is not shared with the
    encoder it was copied from."""
    nlp = trained_pipeline(checkpoint, "tagger", LISTENERS["ElectraListener"][1])
    upstream = nlp.get_pipe("electra_transformer").model
    nlp.replace_listeners("electra_transformer", "tagger", ["model.tok2vec"])
    own = encoder_node(nlp.get_pipe("tagger").model)
    assert own is not encoder_node(upstream) and own.shims[0].id != encoder_node(upstream).shims[0].id


def test_source_a_frozen_component_with_its_listener_replaced(checkpoint, tmp_path):
    """What `spacy train` does for [components.tagger] source = ... replace_listeners = [...]."""
    nlp = trained_pipeline(checkpoint, "tagger", LISTENERS["ElectraListener"][1])
    before = annotations(nlp)
    nlp.to_disk(tmp_path / "trained")
    config = spacy.util.load_config_from_str(
        f"""
[nlp]
lang = "en"
pipeline = ["tagger"]

[components]

[components.tagger]
source = "{tmp_path / 'trained'}"
replace_listeners = ["model.tok2vec"]
"""
    )
    sourced = spacy.util.load_model_from_config(config, auto_fill=True)
    assert sourced.pipe_names == ["tagger"]
    assert sourced.config["components"]["tagger"]["model"]["tok2vec"]["@architectures"] == "spacy_electra.ElectraTok2Vec.v1"
    assert annotations(sourced) == before


@pytest.mark.parametrize("arch", ["spacy_electra.ElectraTok2Vec.v1", "spacy_electra.ElectraScalarMixTok2Vec.v1", "spacy_electra.ElectraTrfPoolingTok2Vec.v1"])
def test_standalone_architectures_initialize_and_train_from_scratch(checkpoint, arch):
    """The configs that replace_listeners writes also build a fresh pipeline (e.g. after editing
    the config): they initialize from the checkpoint and learn."""
    encoder = trf_architecture(checkpoint, all_layers=True)
    tok2vec = {"@architectures": arch, "encoder": encoder}
    if arch.endswith("TrfPoolingTok2Vec.v1"):
        tok2vec["pooling"] = {"@layers": "reduce_mean.v1"}
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("tagger", config={"model": {"tok2vec": tok2vec}})
    examples = toy_treebank(12, vocab=nlp.vocab)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    losses = []
    for _ in range(8):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step["tagger"])
    assert losses[-1] < 0.5 * losses[1], losses
