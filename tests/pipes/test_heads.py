"""Task components: electra_tagger, electra_ner, electra_textcat(_multilabel)."""
import random
import subprocess
import sys

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_electra.decoding import biluo_tags, is_valid_biluo, spans_from_biluo, transition_mask, viterbi

from ..conftest import trf_config, make_hf_checkpoint

PLACES = ["london", "paris", "york"]
OTHER = ["city", "cafe", "new"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("heads") / "disc"
    make_hf_checkpoint(path, "ElectraForPreTraining", random_all=False)
    return path


def ner_examples(nlp, n=24, seed=0):
    """'the X is in Y .' where X, Y are places (LOC) or other words (no entity)."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        a, b = rng.choice(PLACES + OTHER), rng.choice(PLACES + OTHER)
        words = ["the", a, "is", "in", b, "."]
        doc = Doc(nlp.vocab, words=words)
        ents = [(1, 2), (4, 5)]
        ref = Doc(nlp.vocab, words=words)
        ref.ents = [Span(ref, s, e, label="LOC") for s, e in ents if words[s] in PLACES]
        examples.append(Example(doc, ref))
    return examples


def text_examples(nlp, n=24, multilabel=False):
    rng = random.Random(1)
    examples = []
    for _ in range(n):
        words = [rng.choice(PLACES + OTHER) for _ in range(5)]
        has_place = any(w in PLACES for w in words[:2])
        cats = {"PLACE": float(has_place), "NONE": float(not has_place)}
        if multilabel:
            cats = {"PLACE": float(has_place), "CAFE": float("cafe" in words)}
        examples.append(Example.from_dict(Doc(nlp.vocab, words=words), {"cats": cats}))
    return examples


def with_encoder(checkpoint, **extra):
    return {"model": {"tok2vec": trf_config(str(checkpoint))}, **extra}


def train(nlp, examples, steps=20, lr=0.01):
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = lr
    losses = []
    for _ in range(steps):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(sum(step.values()))
    return losses


# -- decoding ---------------------------------------------------------------------------------
def reference_is_valid(tags):
    """An independent statement of BILUO validity, to check the decoder's own."""
    inside = None
    for tag in tags:
        if inside is None:
            if tag[0] in "IL":
                return False
            if tag[0] == "B":
                inside = tag[2:]
        else:
            if tag[0] not in "IL" or tag[2:] != inside:
                return False
            if tag[0] == "L":
                inside = None
    return inside is None


def test_decoder_validity_matches_an_independent_definition():
    import itertools

    tags = biluo_tags(["A", "B"])
    for n in range(1, 4):
        for seq in itertools.product(tags, repeat=n):
            assert is_valid_biluo(seq) == reference_is_valid(seq), seq


def test_viterbi_never_emits_invalid_sequences_from_random_scores():
    tags = biluo_tags(["PER", "LOC", "ORG"])
    allowed, starts, ends = transition_mask(tags)
    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 7, 20]:
        for _ in range(50):
            path = viterbi(rng.normal(size=(n, len(tags))) * 5, allowed, starts, ends)
            assert reference_is_valid([tags[i] for i in path])


def test_viterbi_finds_the_best_valid_path_by_brute_force():
    import itertools

    tags = biluo_tags(["A", "B"])
    allowed, starts, ends = transition_mask(tags)
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.normal(size=(3, len(tags)))
        best = max(
            (p for p in itertools.product(range(len(tags)), repeat=3) if reference_is_valid([tags[i] for i in p])),
            key=lambda p: sum(scores[t, i] for t, i in enumerate(p)),
        )
        assert tuple(viterbi(scores, allowed, starts, ends)) == best


def test_spans_from_biluo_uses_spacy_and_refuses_invalid_paths():
    doc = Doc(spacy.blank("en").vocab, words=list("abcdef"))
    spans = spans_from_biluo(doc, ["O", "B-X", "I-X", "L-X", "U-Y", "O"])
    assert [(s.start, s.end, s.label_) for s in spans] == [(1, 4, "X"), (4, 5, "Y")]
    # spaCy's biluo_tags_to_spans drops an unclosed entity silently; the decoder's check does not.
    for invalid in (["B-X", "O", "O", "O", "O", "O"], ["B-X", "L-Y", "O", "O", "O", "O"], ["O", "I-X", "L-X", "O", "O", "O"]):
        with pytest.raises(ValueError, match="Invalid BILUO"):
            spans_from_biluo(doc, invalid)


# -- NER --------------------------------------------------------------------------------------
def test_ner_learns_and_scores(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config=with_encoder(checkpoint))
    examples = ner_examples(nlp)
    losses = train(nlp, examples)
    assert nlp.get_pipe("electra_ner").labels == ("LOC",)  # inferred at initialize
    assert losses[-1] < 0.2 * losses[0]
    doc = nlp(Doc(nlp.vocab, words=["the", "paris", "is", "in", "cafe", "."]))
    assert [(e.text, e.label_) for e in doc.ents] == [("paris", "LOC")]
    scores = nlp.evaluate(ner_examples(nlp, 12, seed=5))
    assert scores["ents_f"] > 0.9 and "LOC" in scores["ents_per_type"]


def test_untrained_ner_decodes_valid_paths_from_random_weights(checkpoint):
    """The decoder's own output (tag paths from predict), from an output layer with large random
    weights, so that an unconstrained argmax would emit invalid sequences."""
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config=with_encoder(checkpoint, labels=["PER", "LOC", "ORG", "MISC"]))
    nlp.initialize()
    ner = nlp.get_pipe("electra_ner")
    output = ner.model.get_ref("output_layer")
    rng = np.random.default_rng(0)
    output.set_param("W", rng.normal(size=output.get_param("W").shape).astype("f") * 20)
    output.set_param("b", rng.normal(size=output.get_param("b").shape).astype("f") * 5)
    texts = ["the new york city cafe is in paris london .", "paris", "", "   ", "a b c d e f g h i j k l m n o p"]
    docs = [nlp.make_doc(t) for t in texts]
    tags = ner.tag_names
    raw = [[tags[i] for i in logits.argmax(axis=-1)] for logits in ner.model.predict(docs)]
    assert not all(reference_is_valid(seq) for seq in raw if seq)  # the argmax alone is not valid
    for doc, path in zip(docs, ner.predict(docs)):
        assert len(path) == len(doc)
        assert reference_is_valid([tags[i] for i in path])


def test_ner_keeps_preset_entities_and_fills_around_them(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config=with_encoder(checkpoint))
    train(nlp, ner_examples(nlp))
    doc = Doc(nlp.vocab, words=["the", "paris", "is", "in", "london", "."])
    doc.ents = [Span(doc, 0, 2, label="FAC")]  # overlaps the span the model would predict
    doc = nlp(doc)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(0, 2, "FAC"), (4, 5, "LOC")]
    # overwrite = true: the component's prediction replaces what was there.
    nlp.get_pipe("electra_ner").cfg["overwrite"] = True
    doc = Doc(nlp.vocab, words=["the", "paris", "is", "in", "london", "."])
    doc.ents = [Span(doc, 0, 2, label="FAC")]
    assert [(e.start, e.end, e.label_) for e in nlp(doc).ents] == [(1, 2, "LOC"), (4, 5, "LOC")]


def test_ner_unseen_label_in_training_data_is_a_clear_error(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config=with_encoder(checkpoint, labels=["PER"]))
    examples = ner_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="has label.*LOC.*does not know"):
        nlp.update(examples, sgd=optimizer)


def test_no_labels_anywhere_is_a_clear_error(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config=with_encoder(checkpoint))
    examples = [Example.from_dict(nlp.make_doc("the city"), {})]
    with pytest.raises(ValueError, match="found no labels"):
        nlp.initialize(lambda: examples)


def test_empty_and_whitespace_docs_train_and_predict(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config=with_encoder(checkpoint))
    examples = ner_examples(nlp, 8) + [Example.from_dict(nlp.make_doc(t), {"entities": []}) for t in ["", "  \n "]]
    train(nlp, examples, steps=2)
    docs = list(nlp.pipe(["", " \n\n ", "paris"]))
    assert len(docs[0].ents) == 0 and len(docs[1].ents) == 0


# -- tagger -----------------------------------------------------------------------------------
@pytest.mark.parametrize("attr", ["tag", "pos"])
def test_tagger_learns_tags_or_pos(checkpoint, attr):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_tagger", config=with_encoder(checkpoint, attr=attr))
    examples = []
    for ex in ner_examples(nlp):
        words = [t.text for t in ex.reference]
        values = ["DET", "PROPN" if words[1] in PLACES else "NOUN", "AUX", "ADP", "PROPN" if words[4] in PLACES else "NOUN", "PUNCT"]
        examples.append(Example.from_dict(Doc(nlp.vocab, words=words), {"words": words, ("tags" if attr == "tag" else "pos"): values}))
    losses = train(nlp, examples)
    assert losses[-1] < 0.2 * losses[0]
    scores = nlp.evaluate(examples)
    assert scores[f"{attr}_acc"] > 0.95
    doc = nlp(Doc(nlp.vocab, words=["the", "york", "is", "in", "cafe", "."]))
    got = [t.tag_ if attr == "tag" else t.pos_ for t in doc]
    assert got == ["DET", "PROPN", "AUX", "ADP", "NOUN", "PUNCT"]


# -- textcat ----------------------------------------------------------------------------------
def test_textcat_exclusive_learns(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_textcat", config=with_encoder(checkpoint))
    examples = text_examples(nlp)
    losses = train(nlp, examples, steps=30, lr=0.003)
    assert losses[-1] < 0.3 * losses[0]
    scores = nlp.evaluate(examples)
    assert scores["cats_macro_f"] > 0.9
    doc = nlp("london paris cafe new city")
    assert abs(sum(doc.cats.values()) - 1.0) < 1e-5 and doc.cats["PLACE"] > 0.5


def test_textcat_multilabel_learns(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_textcat_multilabel", config=with_encoder(checkpoint))
    examples = text_examples(nlp, multilabel=True)
    losses = train(nlp, examples, steps=30, lr=0.003)
    assert losses[-1] < 0.3 * losses[0]
    scores = nlp.evaluate(examples)
    assert scores["cats_macro_f"] > 0.85


def test_textcat_pools_the_cls_of_every_window(checkpoint):
    nlp = spacy.blank("en")
    config = {"model": {"tok2vec": trf_config(str(checkpoint), window=8, stride=4)}}
    nlp.add_pipe("electra_textcat", config=config)
    nlp.initialize(lambda: text_examples(nlp, 4))
    model = nlp.get_pipe("electra_textcat").model
    encoder, pool = model.layers[0], model.layers[1]
    doc = nlp.make_doc("london paris cafe new city " * 5)
    data = encoder.predict([doc])
    assert len(data[0].model_output["cls_vectors"]) > 3
    np.testing.assert_allclose(pool.predict(data)[0], data[0].model_output["cls_vectors"].mean(axis=0), rtol=1e-6)


def test_exclusive_textcat_refuses_multilabel_data(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_textcat", config=with_encoder(checkpoint))
    examples = text_examples(nlp, 4, multilabel=True)
    examples[0].reference.cats = {"PLACE": 1.0, "CAFE": 1.0}
    optimizer = nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="electra_textcat_multilabel"):
        nlp.update(examples, sgd=optimizer)


# -- shared encoder, config, serialisation ------------------------------------------------------
def test_heads_share_an_upstream_encoder(checkpoint):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint))})
    listener = {"@architectures": "spacy_electra.ElectraTransformerListener.v1", "upstream": "electra_transformer"}
    nlp.add_pipe("electra_ner", config={"model": {"tok2vec": listener}})
    nlp.add_pipe("electra_textcat", config={"model": {"tok2vec": listener}})
    examples = ner_examples(nlp)
    for ex, cat in zip(examples, text_examples(nlp)):
        ex.reference.cats = cat.reference.cats
    losses = train(nlp, examples)
    assert nlp.get_pipe("electra_transformer").listening_components == ["electra_ner", "electra_textcat"]
    assert losses[-1] < 0.3 * losses[0]
    doc = nlp(Doc(nlp.vocab, words=["the", "paris", "is", "in", "cafe", "."]))
    assert [e.text for e in doc.ents] == ["paris"]


def test_missing_default_checkpoint_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner")
    with pytest.raises(ValueError, match=r"set `checkpoint`.*local folder|local folder.*checkpoint"):
        nlp.initialize(lambda: ner_examples(nlp, 2))


def test_head_with_own_encoder_round_trips_offline(checkpoint, tmp_path):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoint, ckpt)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config=with_encoder(ckpt))
    train(nlp, ner_examples(nlp), steps=10)
    nlp.to_disk(tmp_path / "p")
    shutil.rmtree(ckpt)
    loaded = spacy.load(tmp_path / "p")
    words = ["the", "london", "is", "in", "york", "."]
    a = nlp(Doc(nlp.vocab, words=words))
    b = loaded(Doc(loaded.vocab, words=words))
    assert [(e.start, e.label_) for e in a.ents] == [(e.start, e.label_) for e in b.ents]


def test_factories_resolve_through_entry_points_without_import():
    code = (
        "import spacy  # no import of spacy_electra: the entry points must do it\n"
        "nlp = spacy.blank('en')\n"
        "for name in ['electra_transformer', 'electra_tagger', 'electra_ner', 'electra_textcat', 'electra_textcat_multilabel']:\n"
        "    nlp.add_pipe(name, name=name + '_x', config={'model': {'tok2vec': {'encoder': {'checkpoint': '/nonexistent'}}}} if name != 'electra_transformer' else {'model': {'encoder': {'checkpoint': '/nonexistent'}}})\n"
        "print(nlp.pipe_names)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "electra_ner_x" in result.stdout


# -- layer-wise learning-rate decay -----------------------------------------------------------
def test_layer_lr_decay_scales_the_adam_update_not_the_gradient(checkpoint):
    import torch
    from thinc.api import Adam

    from spacy_electra.layers.torch_encoder import get_encoder

    def one_step(decay, grad_scale=1.0):
        nlp = spacy.blank("en")
        nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint), layer_lr_decay=decay)})
        nlp.initialize()
        model = nlp.get_pipe("electra_transformer").model
        module = get_encoder(model).encoder
        before = {n: p.detach().clone() for n, p in module.named_parameters()}
        torch.manual_seed(0)
        for name, p in module.named_parameters():
            scale = grad_scale ** (int(name.split(".")[1]) + 1) if name.startswith("layers.") else 1.0
            p.grad = torch.randn_like(p) * scale
        model.finish_update(Adam(0.01, L2=0.0, grad_clip=0.0))
        return {n: (p.detach() - before[n]) for n, p in module.named_parameters()}

    plain, decayed = one_step(1.0), one_step(0.5)
    L = 2
    for name in ["layers.0.output.weight", "layers.1.output.weight", "embeddings.word.weight", "projection.weight"]:
        expected = 0.5 ** (L + 1) if not name.startswith("layers.") else 0.5 ** (L + 1 - (int(name.split(".")[1]) + 1))
        torch.testing.assert_close(decayed[name], plain[name] * expected, rtol=1e-4, atol=1e-9)
    # Scaling the gradient by the same factors leaves Adam's first update unchanged.
    scaled_grads = one_step(1.0, grad_scale=0.5)
    torch.testing.assert_close(scaled_grads["layers.0.output.weight"], plain["layers.0.output.weight"], rtol=1e-3, atol=1e-6)
