"""Property-based tests (hypothesis): random Unicode through a whole pipeline."""
import numpy as np
import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, Span
from spacy.training import Example

from ..conftest import trf_config, make_hf_checkpoint

# Every Unicode category, surrogates excluded (not encodable as UTF-8 text).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120)


@pytest.fixture(scope="module")
def nlp(tmp_path_factory):
    path = tmp_path_factory.mktemp("props") / "ckpt"
    make_hf_checkpoint(path, "ElectraForPreTraining")
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(path), window=12, stride=8)})
    listener = {"@architectures": "spacy_electra.ElectraTransformerListener.v1", "upstream": "electra_transformer"}
    for name in ("electra_tagger", "electra_ner", "electra_textcat"):
        nlp.add_pipe(name, config={"model": {"tok2vec": listener}})
    words = ["the", "city", "of", "london", "."]
    ref = Doc(nlp.vocab, words=words, tags=["DT", "NN", "IN", "NNP", "."])
    ref.ents = [Span(ref, 3, 4, label="LOC")]
    ref.cats = {"A": 1.0, "B": 0.0}
    example = Example(Doc(nlp.vocab, words=words), ref)
    nlp.initialize(lambda: [example])
    return nlp


def summary(doc):
    return (
        [(t.text, t.tag_, t.ent_iob_, t.ent_type_) for t in doc],
        {k: round(v, 4) for k, v in doc.cats.items()},
    )


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXT, min_size=1, max_size=4))
def test_random_unicode_every_token_annotated_and_pipe_equals_call(nlp, texts):
    piped = list(nlp.pipe(texts))
    for text, doc in zip(texts, piped):
        assert doc.text == text
        data = doc._.trf_data
        lengths = data.align.lengths
        for token, n in zip(doc, lengths):
            if token.is_space:
                assert n == 0
            else:
                assert n >= 1, f"token {token.text!r} got no wordpiece"
                assert token.tag_ != "", f"token {token.text!r} got no tag"
                assert token.ent_iob_ in ("B", "I", "O")
        assert set(doc.cats) == {"A", "B"}
        single = nlp(text)
        assert summary(single) == summary(doc)
        np.testing.assert_allclose(
            single._.trf_data.model_output.last_hidden_state, data.model_output.last_hidden_state, atol=1e-5
        )
