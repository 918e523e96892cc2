"""Fine-tuned HF heads in and out: ElectraForTokenClassification <-> electra_ner / electra_tagger,
ElectraForSequenceClassification <-> electra_textcat(_multilabel). HF is the oracle throughout."""
import itertools
import json
import random
import warnings

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example
from typer.testing import CliRunner

import spacy_electra.pipes.ner  # noqa: F401 (registers the factories)
import spacy_electra.pipes.tagger  # noqa: F401
import spacy_electra.pipes.textcat  # noqa: F401
from spacy_electra.cli import app
from spacy_electra.layers.torch_encoder import get_encoder
from spacy_electra.checkpoint import CheckpointError

from ..conftest import trf_config, make_hf_checkpoint

BIO = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
TAGS = ["DET", "NOUN", "VERB", "ADP", "PUNCT"]
TEXT = "the new york city is in paris ."


def labelled(labels, **config):
    return dict(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}, **config)


def pipeline_with(factory, checkpoint, **config):
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe(factory, config={"model": {"tok2vec": trf_config(str(checkpoint))}, **config})
    return nlp, pipe


def encoder_node(pipe):
    return next(node for node in pipe.model.walk() if node.name == "electra_transformer")


def hf_inputs(pipe, doc):
    """The pieces our encoder sees for ``doc`` (one window) as an HF batch, and each token's first piece."""
    wp = get_encoder(encoder_node(pipe)).wordpiece
    pieces = wp.encode_batch([[t.text for t in doc]])[0]
    ids = torch.tensor([[wp.cls_id, *pieces.ids.tolist(), wp.sep_id]])
    first = 1 + np.concatenate([[0], np.cumsum(pieces.lengths)[:-1]])
    return ids, first


def hf_token_logits(hf, pipe, doc):
    ids, first = hf_inputs(pipe, doc)
    with torch.no_grad():
        return hf.eval()(input_ids=ids).logits[0].numpy()[first]


def hf_doc_logits(hf, pipe, doc):
    ids, _ = hf_inputs(pipe, doc)
    with torch.no_grad():
        return hf.eval()(input_ids=ids).logits[0].numpy()


def initialize_strictly(nlp, get_examples=None):
    """nlp.initialize, failing on any warning: a head we take must not be reported as left behind."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return nlp.initialize(get_examples)


# -- import: logits equal to HF's on the same pieces ---------------------------------------------
def test_ner_imports_bio_head_with_hf_logits(tmp_path):
    hf = make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(BIO))
    nlp, ner = pipeline_with("electra_ner", tmp_path)
    initialize_strictly(nlp)  # no data: labels come from id2label
    assert ner.labels == ("LOC", "PER")
    doc = nlp.make_doc(TEXT)
    ours = ner.model.predict([doc])[0]
    ref = hf_token_logits(hf, ner, doc)
    # our BILUO rows O, B/I/L/U-LOC, B/I/L/U-PER copy HF rows O, B, I, I, B (per type)
    rows = [BIO.index(t) for t in ["O", "B-LOC", "I-LOC", "I-LOC", "B-LOC", "B-PER", "I-PER", "I-PER", "B-PER"]]
    assert ours.shape == (len(doc), len(ner.tag_names)) == (8, 9)
    np.testing.assert_allclose(ours, ref[:, rows], atol=1e-5, rtol=0)


def test_tagger_imports_head_with_hf_logits(tmp_path):
    hf = make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(TAGS))
    nlp, tagger = pipeline_with("electra_tagger", tmp_path)
    initialize_strictly(nlp)
    assert tagger.labels == tuple(TAGS)
    doc = nlp.make_doc("the cafes of londoner paris .")  # multi-piece tokens: the first piece counts
    np.testing.assert_allclose(tagger.model.predict([doc])[0], hf_token_logits(hf, tagger, doc), atol=1e-5, rtol=0)
    tagged = nlp(doc.text)
    assert [t.tag_ for t in tagged] == [TAGS[i] for i in hf_token_logits(hf, tagger, doc).argmax(-1)]


@pytest.mark.parametrize("factory,problem_type", [
    ("electra_textcat", "single_label_classification"),
    ("electra_textcat", None),
    ("electra_textcat_multilabel", "multi_label_classification"),
])
def test_textcat_imports_sequence_head_with_hf_logits(tmp_path, factory, problem_type):
    labels = ["SPORT", "POLITICS", "ARTS"]
    hf = make_hf_checkpoint(tmp_path, "ElectraForSequenceClassification", **labelled(labels, problem_type=problem_type))
    nlp, textcat = pipeline_with(factory, tmp_path)
    initialize_strictly(nlp)
    assert textcat.labels == tuple(labels)
    docs = [nlp.make_doc(TEXT), nlp.make_doc("cafes in londoner ?")]
    ours = textcat.model.predict(docs)
    for doc, row in zip(docs, ours):
        np.testing.assert_allclose(row, hf_doc_logits(hf, textcat, doc), atol=1e-5, rtol=0)
    cats = nlp(TEXT).cats
    probs = torch.tensor(hf_doc_logits(hf, textcat, docs[0]))
    expected = probs.sigmoid() if factory.endswith("multilabel") else probs.softmax(-1)
    np.testing.assert_allclose([cats[label] for label in labels], expected.numpy(), atol=1e-5)


def test_thinc_gelu_is_the_exact_erf_gelu_of_hf_heads():
    """DocClassifier's dense layer is thinc's Gelu; HF's classification head uses the erf GELU.
    Their difference must stay far below the 1e-5 the logits are compared at."""
    from thinc.api import NumpyOps

    x = np.linspace(-12, 12, 200001, dtype="float32")
    ours = NumpyOps().gelu(x)
    ref = torch.nn.functional.gelu(torch.from_numpy(x), approximate="none").numpy()
    assert np.abs(ours - ref).max() < 2e-6
    tanh = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    assert np.abs(tanh - ref).max() > 1e-4  # the approximation would be told apart


def test_training_data_with_the_head_labels_keeps_the_imported_weights(tmp_path):
    hf = make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(BIO))
    nlp, ner = pipeline_with("electra_ner", tmp_path)
    words = TEXT.split()
    ref = Doc(nlp.vocab, words=words)
    ref.ents = [Span(ref, 6, 7, label="LOC")]
    initialize_strictly(nlp, lambda: [Example(Doc(nlp.vocab, words=words), ref)])
    assert ner.labels == ("LOC", "PER")  # the head's, in its order, although the data only has LOC
    doc = nlp.make_doc(TEXT)
    np.testing.assert_allclose(ner.model.predict([doc])[0][:, 0], hf_token_logits(hf, ner, doc)[:, 0], atol=1e-5)


# -- constrained decoding of a hand-built BIO checkpoint ------------------------------------------
def hand_built_bio_checkpoint(directory, words, targets):
    """A token classifier whose logits on ``words`` are exactly ``targets`` (n_words, len(BIO)):
    the classifier is solved by least squares from the encoder's first-piece vectors."""
    hf = make_hf_checkpoint(directory, "ElectraForTokenClassification", **labelled(BIO))
    nlp, ner = pipeline_with("electra_ner", directory)
    nlp.initialize()
    ids, first = hf_inputs(ner, Doc(nlp.vocab, words=words))
    with torch.no_grad():
        hidden = hf.electra(input_ids=ids).last_hidden_state[0, first].double()
        solution = torch.linalg.lstsq(hidden, torch.tensor(targets, dtype=torch.float64)).solution
        hf.classifier.weight.copy_(solution.T.float())
        hf.classifier.bias.zero_()
    hf.save_pretrained(directory, safe_serialization=True)
    return hf


def bio_entities(tags):
    """Entities of a valid BIO sequence, as (start, end, type)."""
    ents = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            ents.append([i, i + 1, tag[2:]])
        elif tag.startswith("I-"):
            ents[-1][1] = i + 1
    return [tuple(e) for e in ents]


def valid_bio(tags):
    return all(not t.startswith("I-") or (p != "O" and p[2:] == t[2:]) for p, t in zip(["O"] + list(tags), tags))


def test_hand_built_bio_checkpoint_yields_the_entities_its_logits_dictate(tmp_path):
    words = TEXT.split()
    gold = ["O", "B-LOC", "I-LOC", "I-LOC", "O", "O", "B-PER", "O"]
    rng = np.random.default_rng(0)
    targets = rng.normal(0, 1, (len(words), len(BIO)))
    for i, tag in enumerate(gold):
        targets[i, BIO.index(tag)] = 4.0 + rng.random()
    hf = hand_built_bio_checkpoint(tmp_path, words, targets)
    nlp, _ = pipeline_with("electra_ner", tmp_path)
    initialize_strictly(nlp)
    doc = nlp(Doc(nlp.vocab, words=words))
    logits = hf_token_logits(hf, nlp.get_pipe("electra_ner"), doc)
    np.testing.assert_allclose(logits, targets, atol=1e-3)  # the hand-built logits are what HF computes
    argmax = [BIO[i] for i in logits.argmax(-1)]
    assert argmax == gold
    assert [(e.start, e.end, e.label_) for e in doc.ents] == bio_entities(gold) == [(1, 4, "LOC"), (6, 7, "PER")]


def test_invalid_hf_argmax_becomes_the_best_valid_bio_reading(tmp_path):
    """HF's argmax puts I-PER after O; constrained decoding returns the valid BIO sequence with the
    highest sum of HF logits (checked by brute force)."""
    words = ["the", "new", "york", "city", "is"]
    rng = np.random.default_rng(1)
    targets = rng.normal(0, 1, (len(words), len(BIO)))
    targets[2, BIO.index("I-PER")] = 5.0  # I-PER after what is otherwise O
    hf = hand_built_bio_checkpoint(tmp_path, words, targets)
    nlp, ner = pipeline_with("electra_ner", tmp_path)
    initialize_strictly(nlp)
    doc = nlp(Doc(nlp.vocab, words=words))
    logits = hf_token_logits(hf, ner, doc)
    assert not valid_bio([BIO[i] for i in logits.argmax(-1)])
    best = max(
        (tags for tags in itertools.product(BIO, repeat=len(words)) if valid_bio(tags)),
        key=lambda tags: sum(logits[i, BIO.index(t)] for i, t in enumerate(tags)),
    )
    assert [(e.start, e.end, e.label_) for e in doc.ents] == bio_entities(best)


@pytest.mark.parametrize("scheme", ["BILUO", "BIOES"])
def test_ner_imports_biluo_and_bioes_rows_one_to_one(tmp_path, scheme):
    prefixes = "BILU" if scheme == "BILUO" else "BIES"
    labels = ["O"] + [f"{p}-{t}" for t in ("ORG", "LOC") for p in prefixes]
    hf = make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(labels))
    nlp, ner = pipeline_with("electra_ner", tmp_path)
    initialize_strictly(nlp)
    doc = nlp.make_doc(TEXT)
    named = {"E": "L", "S": "U"}
    as_biluo = {label: label if label == "O" else named.get(label[0], label[0]) + label[1:] for label in labels}
    rows = [labels.index(next(label for label in labels if as_biluo[label] == tag)) for tag in ner.tag_names]
    assert sorted(rows) == list(range(len(labels)))  # every HF row used once
    np.testing.assert_allclose(ner.model.predict([doc])[0], hf_token_logits(hf, ner, doc)[:, rows], atol=1e-5)


# -- export: transformers loads it with no missing keys and equal logits -------------------------
def train_briefly(nlp, examples, steps=3):
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)


def ner_examples(nlp):
    examples = []
    for a, b in [("london", "city"), ("paris", "york"), ("cafe", "london")]:
        words = ["the", a, "is", "in", b, "."]
        ref = Doc(nlp.vocab, words=words)
        ref.ents = [Span(ref, i, i + 1, label="LOC") for i in (1, 4) if words[i] in ("london", "paris", "york")]
        examples.append(Example(Doc(nlp.vocab, words=words), ref))
    return examples


@pytest.fixture(scope="module")
def discriminator(tmp_path_factory):
    path = tmp_path_factory.mktemp("disc")
    make_hf_checkpoint(path, "ElectraForPreTraining")
    return path


def load_exported(cls_name, path):
    import transformers

    model, info = getattr(transformers, cls_name).from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    return model.eval()


def test_trained_ner_exports_with_biluo_names_and_equal_logits(discriminator, tmp_path):
    nlp, ner = pipeline_with("electra_ner", discriminator)
    train_briefly(nlp, ner_examples(nlp))
    assert ner.export_hf(tmp_path / "hf") == "ElectraForTokenClassification"
    out = tmp_path / "hf"
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ElectraForTokenClassification"]
    assert [config["id2label"][str(i)] for i in range(5)] == ["O", "B-LOC", "I-LOC", "L-LOC", "U-LOC"]
    hf = load_exported("ElectraForTokenClassification", out)
    doc = nlp.make_doc("the cafes in londoner paris .")
    np.testing.assert_allclose(ner.model.predict([doc])[0], hf_token_logits(hf, ner, doc), atol=1e-5, rtol=0)
    # and back: the export is a fine-tuned BILUO checkpoint that predicts what the original did
    again, ner2 = pipeline_with("electra_ner", out)
    initialize_strictly(again)
    assert ner2.labels == ner.labels
    np.testing.assert_allclose(ner2.model.predict([doc])[0], ner.model.predict([doc])[0], atol=1e-5)


def test_trained_tagger_exports_with_equal_logits(discriminator, tmp_path):
    nlp, tagger = pipeline_with("electra_tagger", discriminator)
    words = ["the", "cafe", "is", "in", "london", "."]
    examples = [Example.from_dict(Doc(nlp.vocab, words=words), {"tags": ["DET", "NOUN", "VERB", "ADP", "PROPN", "PUNCT"]})]
    train_briefly(nlp, examples)
    tagger.export_hf(tmp_path / "hf")
    hf = load_exported("ElectraForTokenClassification", tmp_path / "hf")
    assert [hf.config.id2label[i] for i in range(len(tagger.labels))] == list(tagger.labels)
    doc = nlp.make_doc("the cafes of londoner .")
    np.testing.assert_allclose(tagger.model.predict([doc])[0], hf_token_logits(hf, tagger, doc), atol=1e-5, rtol=0)


@pytest.mark.parametrize("factory,problem_type", [
    ("electra_textcat", "single_label_classification"),
    ("electra_textcat_multilabel", "multi_label_classification"),
])
def test_trained_textcat_exports_through_the_cli_with_equal_logits(discriminator, tmp_path, factory, problem_type):
    nlp, textcat = pipeline_with(factory, discriminator)
    rng = random.Random(0)
    examples = []
    for _ in range(4):
        words = [rng.choice(["london", "cafe", "city", "paris"]) for _ in range(4)]
        place = "london" in words or "paris" in words
        examples.append(Example.from_dict(Doc(nlp.vocab, words=words), {"cats": {"PLACE": float(place), "OTHER": float(not place)}}))
    train_briefly(nlp, examples)
    nlp.to_disk(tmp_path / "pipeline")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "pipeline"), str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert "ElectraForSequenceClassification" in result.output
    hf = load_exported("ElectraForSequenceClassification", tmp_path / "hf")
    assert hf.config.problem_type == problem_type
    doc = nlp.make_doc("the cafe of london city .")
    np.testing.assert_allclose(textcat.model.predict([doc])[0], hf_doc_logits(hf, textcat, doc), atol=1e-5, rtol=0)


def test_cli_export_asks_which_component_when_there_are_several(discriminator, tmp_path):
    nlp = spacy.blank("en")
    for factory in ("electra_ner", "electra_tagger"):
        nlp.add_pipe(factory, config={"model": {"tok2vec": trf_config(str(discriminator))}})
    nlp.initialize(lambda: [Example.from_dict(Doc(nlp.vocab, words=["the", "paris"]), {"tags": ["DET", "PROPN"], "entities": ["O", "U-LOC"]})])
    nlp.to_disk(tmp_path / "pipeline")
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tmp_path / "pipeline"), str(tmp_path / "hf")])
    assert result.exit_code != 0 and "--component" in result.output and "electra_ner, electra_tagger" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "pipeline"), str(tmp_path / "hf"), "--component", "electra_tagger"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["id2label"] == {"0": "DET", "1": "PROPN"}


def test_mean_pooling_refuses_to_export(discriminator, tmp_path):
    nlp = spacy.blank("en")
    model = {"@architectures": "spacy_electra.TokenClassifier.v1", "pooling": "mean", "tok2vec": trf_config(str(discriminator))}
    nlp.add_pipe("electra_tagger", config={"model": model})
    nlp.initialize(lambda: [Example.from_dict(Doc(nlp.vocab, words=["the", "paris"]), {"tags": ["DET", "PROPN"]})])
    with pytest.raises(ValueError, match='only pooling = "first" exports'):
        nlp.get_pipe("electra_tagger").export_hf(tmp_path / "hf")


# -- bad input ------------------------------------------------------------------------------------
def rewrite_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_id2label_that_disagrees_with_the_head_size_is_refused(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(BIO))
    rewrite_config(tmp_path, id2label={str(i): label for i, label in enumerate(BIO[:3])})
    nlp, _ = pipeline_with("electra_ner", tmp_path)
    with pytest.raises(CheckpointError, match="id2label names 3 labels but the classifier has 5 rows"):
        nlp.initialize()


def test_plain_labels_into_ner_say_to_use_the_tagger(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(["O", "PER", "LOC"]))
    nlp, _ = pipeline_with("electra_ner", tmp_path)
    with pytest.raises(CheckpointError, match=r"labels PER, LOC are not BIO/BILUO tags.*use electra_tagger"):
        nlp.initialize()


def test_type_without_inside_tag_is_refused(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(["O", "B-PER", "I-PER", "B-LOC"]))
    nlp, _ = pipeline_with("electra_ner", tmp_path)
    with pytest.raises(CheckpointError, match="entity type 'LOC' has no I-LOC label"):
        nlp.initialize()


def test_sequence_head_into_ner_is_refused(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForSequenceClassification", **labelled(["A", "B"]))
    nlp, _ = pipeline_with("electra_ner", tmp_path)
    with pytest.raises(CheckpointError, match="ElectraForSequenceClassification head, which electra_ner cannot use.*electra_textcat"):
        nlp.initialize()


def test_token_head_into_textcat_is_refused(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(BIO))
    nlp, _ = pipeline_with("electra_textcat", tmp_path)
    with pytest.raises(CheckpointError, match="ElectraForTokenClassification head, which electra_textcat cannot use"):
        nlp.initialize()


def test_multilabel_head_into_exclusive_textcat_suggests_multilabel(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForSequenceClassification", **labelled(["A", "B"], problem_type="multi_label_classification"))
    nlp, _ = pipeline_with("electra_textcat", tmp_path)
    with pytest.raises(CheckpointError, match="'multi_label_classification', which electra_textcat cannot use: load it into electra_textcat_multilabel"):
        nlp.initialize()


def test_single_label_head_into_multilabel_textcat_is_refused(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForSequenceClassification", **labelled(["A", "B"]))
    nlp, _ = pipeline_with("electra_textcat_multilabel", tmp_path)
    with pytest.raises(CheckpointError, match=r"\(the default\), which electra_textcat_multilabel cannot use: load it into electra_textcat"):
        nlp.initialize()


def test_regression_head_is_refused(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForSequenceClassification", **labelled(["score"], problem_type="regression"))
    nlp, _ = pipeline_with("electra_textcat", tmp_path)
    with pytest.raises(CheckpointError, match="regression head with 1 output"):
        nlp.initialize()


def test_training_labels_outside_the_head_are_refused(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(BIO))
    nlp, _ = pipeline_with("electra_ner", tmp_path)
    words = ["the", "cafe"]
    ref = Doc(nlp.vocab, words=words, ents=["O", "B-ORG"])
    with pytest.raises(CheckpointError, match=r"label\(s\) ORG .* not among the labels of the fine-tuned head .*\(LOC, PER\)"):
        nlp.initialize(lambda: [Example(Doc(nlp.vocab, words=words), ref)])


def test_head_on_a_shared_encoder_exports_the_upstream_encoder(discriminator, tmp_path):
    nlp = spacy.blank("en")
    trf = nlp.add_pipe("electra_transformer", config={"model": trf_config(str(discriminator))})
    listener = {"@architectures": "spacy_electra.ElectraTransformerListener.v1", "upstream": "electra_transformer"}
    textcat = nlp.add_pipe("electra_textcat", config={"model": {"tok2vec": listener}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"PLACE": p, "OTHER": 1 - p}}) for t, p in [("the london cafe", 1.0), ("a new city", 0.0)]]
    train_briefly(nlp, examples)
    nlp.to_disk(tmp_path / "pipeline")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "pipeline"), str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    hf = load_exported("ElectraForSequenceClassification", tmp_path / "hf")
    doc = nlp("the cafes of paris")
    expected = torch.tensor(hf_doc_logits(hf, trf, doc)).softmax(-1).numpy()
    np.testing.assert_allclose([doc.cats[label] for label in textcat.labels], expected, atol=1e-5)


def test_token_head_into_mean_pooling_is_refused(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", **labelled(TAGS))
    nlp = spacy.blank("en")
    model = {"@architectures": "spacy_electra.TokenClassifier.v1", "pooling": "mean", "tok2vec": trf_config(str(tmp_path))}
    nlp.add_pipe("electra_tagger", config={"model": model})
    with pytest.raises(CheckpointError, match='pools pieces with mean: set pooling = "first"'):
        nlp.initialize()
