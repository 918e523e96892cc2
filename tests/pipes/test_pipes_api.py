"""Component API parity with spaCy: score weights, loss scale, scorer/overwrite/threshold/
positive_label, rehearse, checkpoint advice, configs, spacy debug data."""
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from spacy_electra.checkpoint import CheckpointError
from spacy_electra.pipes import ner as _ner, tagger as _tagger, textcat as _textcat  # noqa: F401

from ..conftest import trf_config, make_hf_checkpoint
from .test_heads import PLACES, ner_examples, text_examples, train, with_encoder
from ..layers.test_listeners_training import toy_treebank

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "disc"
    make_hf_checkpoint(path, "ElectraForPreTraining", random_all=False)
    return path


# -- score weights ----------------------------------------------------------------------------
def pos_examples(nlp):
    examples = []
    for ex in ner_examples(nlp):
        words = [t.text for t in ex.reference]
        pos = ["DET", "PROPN" if words[1] in PLACES else "NOUN", "AUX", "ADP", "PROPN" if words[4] in PLACES else "NOUN", "PUNCT"]
        examples.append(Example.from_dict(Doc(nlp.vocab, words=words), {"words": words, "pos": pos}))
    return examples


def test_pos_tagger_main_score_is_not_zero(checkpoint):
    """spacy train's main score is the weighted sum of the scores under [training.score_weights],
    filled from the factory's weights: with attr = "pos" they must weigh pos_acc."""
    from spacy.training.loop import create_evaluation_callback

    nlp = spacy.blank("en")
    nlp.add_pipe("electra_tagger", config=with_encoder(checkpoint, attr="pos"))
    examples = pos_examples(nlp)
    train(nlp, examples, steps=10)
    weights = nlp.config["training"]["score_weights"]
    main, scores = create_evaluation_callback(nlp, lambda _: examples, weights)()
    assert scores["pos_acc"] > 0.9
    assert main == pytest.approx(weights["pos_acc"] * scores["pos_acc"]) and main > 0.4


# -- loss scale -------------------------------------------------------------------------------
def test_head_and_spacy_tagger_push_gradients_of_the_same_scale_into_a_shared_encoder(checkpoint):
    """spaCy's tagger sums its loss over tokens (normalize=False). An electra_tagger with the
    same weights on the same shared encoder must send the same gradient, not 1/n_tokens of it."""
    from spacy_transformers.layers.listener import TransformerListener

    def gradient_norms(normalize):
        spacy.util.fix_random_seed(0)
        nlp = spacy.blank("en")
        nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint))})
        nlp.add_pipe("tagger", config={"model": {"tok2vec": {"@architectures": "spacy_electra.ElectraListener.v1"}}})
        listener = {"@architectures": "spacy_electra.ElectraTransformerListener.v1"}
        nlp.add_pipe("electra_tagger", config={"model": {"tok2vec": listener, "dropout": 0.0}, "normalize": normalize})
        examples = toy_treebank(6, vocab=nlp.vocab)
        nlp.initialize(lambda: examples)
        ours, theirs = nlp.get_pipe("electra_tagger"), nlp.get_pipe("tagger")
        output, softmax = ours.model.get_ref("output_layer"), theirs.model.get_ref("softmax")
        order = [ours.labels.index(label) for label in theirs.labels]
        softmax.set_param("W", output.get_param("W")[order].copy())
        softmax.set_param("b", output.get_param("b")[order].copy())
        norms = {}
        trf = nlp.get_pipe("electra_transformer")
        for component, listeners in trf.listener_map.items():
            for node in listeners:
                original = node.receive

                def receive(batch_id, outputs, callback, component=component, original=original):
                    def record(d_outputs):
                        norms[component] = np.sqrt(sum(float((d.model_output["last_hidden_state"] ** 2).sum()) for d in d_outputs))
                        return callback(d_outputs)

                    return original(batch_id, outputs, record)

                node.receive = receive
        assert all(isinstance(node, TransformerListener) for node in trf.listeners)
        nlp.update(examples, drop=0.0)
        n_tokens = sum(len(eg.reference) for eg in examples)
        return norms["electra_tagger"] / norms["tagger"], n_tokens

    ratio, _ = gradient_norms(normalize=False)
    assert ratio == pytest.approx(1.0, rel=1e-4)
    ratio, n_tokens = gradient_norms(normalize=True)
    assert ratio == pytest.approx(1.0 / n_tokens, rel=1e-4)


# -- scorer, overwrite, threshold, positive_label, rehearse ------------------------------------
def test_tagger_overwrite_and_scorer(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_tagger", config=with_encoder(checkpoint, scorer={"@scorers": "spacy.tagger_scorer.v1"}))
    nlp.initialize(lambda: toy_treebank(4, vocab=nlp.vocab))
    tagger = nlp.get_pipe("electra_tagger")
    doc = nlp.make_doc("the city was a cafe .")
    doc[0].tag_ = "PRESET"
    assert nlp(doc)[0].tag_ == "PRESET" and doc[1].tag_ in tagger.labels  # overwrite = false keeps it
    tagger.cfg["overwrite"] = True
    doc = nlp.make_doc("the city was a cafe .")
    doc[0].tag_ = "PRESET"
    assert nlp(doc)[0].tag_ in tagger.labels
    assert "tag_acc" in nlp.evaluate(toy_treebank(4, vocab=nlp.vocab))  # spaCy's own tagger scorer works


def test_textcat_positive_label_makes_the_main_score_that_labels_f(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_textcat", config=with_encoder(checkpoint))
    nlp.config["initialize"]["components"]["electra_textcat"] = {"positive_label": "PLACE"}
    examples = text_examples(nlp, 12)
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("electra_textcat").cfg["positive_label"] == "PLACE"
    scores = nlp.evaluate(examples)
    assert scores["cats_score_desc"] == "F (PLACE)"
    assert scores["cats_score"] == scores["cats_f_per_type"]["PLACE"]["f"]


@pytest.mark.parametrize("positive_label,n_labels", [("OTHER", 2), ("PLACE", 3)])
def test_textcat_positive_label_is_checked(checkpoint, positive_label, n_labels):
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("electra_textcat", config=with_encoder(checkpoint))
    examples = text_examples(nlp, 4)
    if n_labels == 3:
        textcat.add_label("THIRD")
    with pytest.raises(ValueError, match="positive_label.*exactly two labels"):
        textcat.initialize(lambda: examples, nlp=nlp, positive_label=positive_label)


def test_multilabel_threshold_decides_what_the_scorer_counts(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_textcat_multilabel", config=with_encoder(checkpoint, threshold=0.0))
    examples = text_examples(nlp, 8, multilabel=True)
    nlp.initialize(lambda: examples)
    assert nlp.evaluate(examples)["cats_micro_r"] == 1.0  # everything counts as predicted
    nlp.get_pipe("electra_textcat_multilabel").cfg["threshold"] = 1.0
    assert nlp.evaluate(examples)["cats_micro_r"] == 0.0  # nothing does


@pytest.mark.parametrize("shared", [False, True])
def test_rehearse_is_refused_with_a_clear_error(checkpoint, shared):
    nlp = spacy.blank("en")
    if shared:
        nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint))})
        nlp.add_pipe("electra_ner", config={"model": {"tok2vec": {"@architectures": "spacy_electra.ElectraTransformerListener.v1"}}})
    else:
        nlp.add_pipe("electra_ner", config=with_encoder(checkpoint))
    examples = ner_examples(nlp, 4)
    nlp.initialize(lambda: examples)
    nlp.resume_training()
    with pytest.raises(NotImplementedError, match="does not support rehearsal.*frozen_components"):
        nlp.rehearse(examples)


# -- missing checkpoints ----------------------------------------------------------------------
NO_LABELS = lambda nlp: [Example.from_dict(nlp.make_doc("the city"), {})]  # noqa: E731


def test_missing_local_checkpoint_of_an_own_encoder_is_reported_before_labels(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config={"model": {"tok2vec": trf_config(str(tmp_path / "no" / "such"))}})
    with pytest.raises(CheckpointError) as err:
        nlp.initialize(lambda: NO_LABELS(nlp))
    message = str(err.value)
    assert "does not exist" in message and "[components.electra_ner.model.tok2vec.encoder]" in message
    assert "huggingface-cli" not in message and "electra_transformer" not in message


def test_missing_hub_checkpoint_says_how_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config={"model": {"tok2vec": trf_config("google/electra-small-discriminator")}})
    with pytest.raises(CheckpointError, match=r"huggingface-cli download google/electra-small-discriminator.*\[components\.electra_ner\.model\.tok2vec\.encoder\]"):
        nlp.initialize(lambda: NO_LABELS(nlp))


def test_missing_checkpoint_of_the_shared_encoder_names_its_section(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", name="trf", config={"model": trf_config(str(tmp_path / "gone"))})
    with pytest.raises(CheckpointError, match=r"does not exist: set `checkpoint` in \[components\.trf\.model\.encoder\]"):
        nlp.initialize()


# -- configs ----------------------------------------------------------------------------------
TRAIN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.cfg") if not p.name.startswith(("pretrain_", "assemble", "distill")))


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_training_configs_build_and_are_complete(checkpoint, path):
    config = spacy.util.load_config(path, overrides={"paths.checkpoint": str(checkpoint)}, interpolate=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == config["nlp"]["pipeline"]
    for name in nlp.pipe_names:  # nothing left for spaCy to fill in: the files show every setting
        assert nlp.config["components"][name] == config["components"][name], name


def test_spacy_debug_data_runs_on_an_electra_ner_config(checkpoint, tmp_path, capsys):
    """spacy debug data picks its sections by factory name ("ner", "tagger", ...), so it shows
    the general checks for electra_ner but not spaCy's NER section (documented in the README)."""
    from spacy.cli.debug_data import debug_data

    nlp = spacy.blank("en")
    for split, seed, n in (("train", 0, 120), ("dev", 1, 20)):
        DocBin(docs=[eg.reference for eg in ner_examples(nlp, n, seed=seed)]).to_disk(tmp_path / f"{split}.spacy")
    overrides = {"paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "dev.spacy"), "paths.checkpoint": str(checkpoint)}
    debug_data(ROOT / "configs" / "ner.cfg", config_overrides=overrides, silent=False, no_format=True)
    out = capsys.readouterr().out
    assert "120 training docs" in out and "20 evaluation docs" in out
