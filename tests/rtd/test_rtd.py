"""electra_rtd: HF parity, the piece -> token rule, windows, spans and scores, whitespace and
empty docs, saving and loading, and checkpoints without a discriminator head."""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin

import spacy_electra.rtd  # noqa: F401  (registers the factory and architecture)
from spacy_electra.checkpoint import CheckpointError
from spacy_electra.rtd.architecture import doc_pieces, get_module
from spacy_electra.rtd.component import token_probabilities
from spacy_electra.windows import window_starts

from ..conftest import hf_config, make_hf_checkpoint, write_vocab

# The sentence of the Hugging Face ELECTRA documentation ("fake" replaced "jumps"), with a word
# of several pieces ("cafes" -> cafe ##s, "jumping" -> j ##u ##m ##p ##ing).
TEXT = "The quick brown fox fake over the lazy dog near the cafes , jumping ."


def rtd_pipeline(checkpoint: Path, **config):
    nlp = spacy.blank("en")
    model = {"checkpoint": str(checkpoint), **config.pop("model", {})}
    nlp.add_pipe("electra_rtd", config={"model": model, **config})
    return nlp


@pytest.fixture(scope="module")
def discriminator(tmp_path_factory):
    """A random HF ElectraForPreTraining (every tensor random) and its folder."""
    directory = tmp_path_factory.mktemp("rtd") / "disc"
    return make_hf_checkpoint(directory, "ElectraForPreTraining"), directory


@pytest.fixture(scope="module")
def nlp(discriminator):
    nlp = rtd_pipeline(discriminator[1])
    nlp.initialize()
    return nlp


def hf_piece_probs(hf, ids):
    """HF's sigmoid(logits) for one window [CLS] ids [SEP], without [CLS] and [SEP]."""
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor([[2] + list(ids) + [3]])).logits
    return torch.sigmoid(logits)[0, 1:-1].numpy()


# -- HF parity and the piece -> token rule ------------------------------------------------------
def test_piece_probabilities_equal_hf_on_a_doc_that_fits_one_window(discriminator, nlp):
    hf, _ = discriminator
    rtd = nlp.get_pipe("electra_rtd")
    doc = nlp.make_doc(TEXT)
    [scores] = rtd.predict([doc])
    [pieces] = doc_pieces(get_module(rtd.model).wordpiece, [doc])
    assert 2 < len(pieces.ids) <= rtd.model.attrs["window"] and pieces.lengths.max() > 1
    assert get_module(rtd.model).wordpiece.cls_id == 2 and get_module(rtd.model).wordpiece.sep_id == 3
    ours = 1.0 / (1.0 + np.exp(-rtd.model.ops.to_numpy(scores.logits).astype(np.float64)))
    np.testing.assert_allclose(ours, hf_piece_probs(hf, pieces.ids.tolist()), atol=1e-5, rtol=0)


def test_a_token_gets_the_max_of_its_pieces_probabilities(discriminator, nlp):
    hf, _ = discriminator
    doc = nlp(TEXT)
    [pieces] = doc_pieces(get_module(nlp.get_pipe("electra_rtd").model).wordpiece, [doc])
    theirs = hf_piece_probs(hf, pieces.ids.tolist())
    start = 0
    for token, n in zip(doc, pieces.lengths.tolist()):
        assert token._.rtd_prob == pytest.approx(float(theirs[start : start + n].max()), abs=1e-5), token.text
        start += n
    assert start == len(theirs)


def test_token_probabilities_by_hand():
    lengths = np.array([2, 0, 1, 3, 0])
    probs = np.array([0.1, 0.7, 0.2, 0.3, 0.9, 0.4])
    np.testing.assert_array_equal(token_probabilities(lengths, probs), [0.7, 0.0, 0.2, 0.9, 0.0])
    np.testing.assert_array_equal(token_probabilities(np.array([0, 0]), np.array([])), [0.0, 0.0])
    assert token_probabilities(np.array([], dtype=int), np.array([])).shape == (0,)
    with pytest.raises(ValueError, match="5 piece probabilities for tokens with 6 pieces"):
        token_probabilities(lengths, probs[:5])


def test_overlapping_windows_average_hidden_states_then_run_the_head(discriminator):
    """A doc longer than the window: each piece's probability is HF's head on the mean of the
    last hidden states of the windows that saw it (module.py says why)."""
    hf, directory = discriminator
    nlp = rtd_pipeline(directory, model={"window": 16, "stride": 12})
    nlp.initialize()
    rtd = nlp.get_pipe("electra_rtd")
    doc = nlp.make_doc(TEXT + " " + TEXT)
    [pieces] = doc_pieces(get_module(rtd.model).wordpiece, [doc])
    ids = pieces.ids.tolist()
    starts = window_starts(len(ids), 16, 12)
    assert len(starts) >= 3
    sums, counts = torch.zeros(len(ids), hf.config.hidden_size), torch.zeros(len(ids), 1)
    with torch.no_grad():
        for start in starts:
            end = min(start + 16, len(ids))
            hidden = hf.electra(input_ids=torch.tensor([[2] + ids[start:end] + [3]])).last_hidden_state[0, 1:-1]
            sums[start:end] += hidden
            counts[start:end] += 1
        expected = torch.sigmoid(hf.discriminator_predictions(sums / counts)).numpy()
    [scores] = rtd.predict([doc])
    ours = 1.0 / (1.0 + np.exp(-rtd.model.ops.to_numpy(scores.logits).astype(np.float64)))
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)


# -- annotations --------------------------------------------------------------------------------
def test_doc_score_is_the_mean_and_spans_are_the_tokens_above_the_threshold(discriminator):
    nlp = rtd_pipeline(discriminator[1])
    nlp.initialize()
    probs = nlp(TEXT)._.rtd_probs
    threshold = float(np.median(probs))
    custom = rtd_pipeline(discriminator[1], threshold=threshold, spans_key="replaced")
    custom.initialize()
    doc = custom(TEXT)
    assert doc._.rtd_probs == pytest.approx(probs, abs=1e-6)
    assert doc._.rtd_score == pytest.approx(float(np.mean(probs)))
    flagged = [t.i for t in doc if t._.rtd_prob > threshold]
    assert 0 < len(flagged) < len(doc)
    assert [(s.start, s.end, s.label_) for s in doc.spans["replaced"]] == [(i, i + 1, "REPLACED") for i in flagged]
    assert "rtd" not in doc.spans


def test_whitespace_tokens_get_zero_and_are_never_flagged(discriminator):
    nlp = rtd_pipeline(discriminator[1], threshold=0.0)  # every other token is flagged
    nlp.initialize()
    doc = nlp(Doc(nlp.vocab, words=["the", "\n\n", "fox", "  ", "fake", "\t"], spaces=[True, False, True, False, False, False]))
    assert [t.is_space for t in doc] == [False, True, False, True, False, True]
    assert [t._.rtd_prob for t in doc if t.is_space] == [0.0, 0.0, 0.0]
    assert all(t._.rtd_prob > 0.0 for t in doc if not t.is_space)
    assert [s.start for s in doc.spans["rtd"]] == [0, 2, 4]
    assert doc._.rtd_score == pytest.approx(np.mean([doc[0]._.rtd_prob, doc[2]._.rtd_prob, doc[4]._.rtd_prob]))
    # the words get what they get without the whitespace around them
    plain = nlp(Doc(nlp.vocab, words=["the", "fox", "fake"]))
    assert [doc[i]._.rtd_prob for i in (0, 2, 4)] == pytest.approx([t._.rtd_prob for t in plain], abs=1e-6)


def test_empty_and_whitespace_only_docs(nlp):
    for text in ("", "   ", "\n\n \t"):
        doc = nlp(text)
        assert doc._.rtd_probs == [0.0] * len(doc) and doc._.rtd_score == 0.0 and list(doc.spans["rtd"]) == []
    docs = list(nlp.pipe(["", TEXT, "  ", "fox"]))
    assert [len(d._.rtd_probs) for d in docs] == [0, len(docs[1]), 1, 1]
    assert docs[1]._.rtd_probs == pytest.approx(nlp(TEXT)._.rtd_probs, abs=1e-6)


def test_annotations_before_the_component_runs_and_after_docbin(nlp):
    blank = nlp.make_doc("the fox")
    assert blank._.rtd_score is None and blank[0]._.rtd_prob is None
    doc = nlp(TEXT)
    restored = list(DocBin(docs=[doc], store_user_data=True).get_docs(nlp.vocab))[0]
    assert list(restored._.rtd_probs) == doc._.rtd_probs and restored[3]._.rtd_prob == doc[3]._.rtd_prob
    assert restored._.rtd_score == doc._.rtd_score


def test_update_leaves_the_discriminator_unchanged(discriminator):
    from spacy.training import Example

    nlp = rtd_pipeline(discriminator[1])
    nlp.initialize()
    rtd = nlp.get_pipe("electra_rtd")
    before = nlp(TEXT)._.rtd_probs
    assert not rtd.is_trainable
    examples = [Example(nlp.make_doc(TEXT), nlp.make_doc(TEXT))]
    assert nlp.update(examples, sgd=nlp.create_optimizer()) == {}
    assert nlp(TEXT)._.rtd_probs == before


# -- saving and loading ---------------------------------------------------------------------------
def test_saved_pipeline_carries_the_head_and_loads_offline(discriminator, tmp_path):
    hf, directory = discriminator
    source = tmp_path / "disc"
    shutil.copytree(directory, source)
    nlp = rtd_pipeline(source, threshold=0.4, spans_key="r")
    nlp.initialize()
    expected = nlp(TEXT)._.rtd_probs
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(source)  # the checkpoint is gone: the pipeline holds everything
    loaded = spacy.load(tmp_path / "pipeline")
    doc = loaded(TEXT)
    assert doc._.rtd_probs == pytest.approx(expected, abs=1e-6)
    assert loaded.get_pipe("electra_rtd").cfg == {"spans_key": "r", "threshold": 0.4}
    head = get_module(loaded.get_pipe("electra_rtd").model).head
    torch.testing.assert_close(head.dense.weight, hf.discriminator_predictions.dense.weight, atol=0, rtol=0)
    torch.testing.assert_close(head.prediction.weight, hf.discriminator_predictions.dense_prediction.weight, atol=0, rtol=0)


def test_add_pipe_reads_nothing_and_a_missing_checkpoint_fails_at_initialize(tmp_path):
    missing = tmp_path / "no" / "such" / "discriminator"
    nlp = rtd_pipeline(missing)  # no error: nothing is read yet
    with pytest.raises(CheckpointError) as caught:
        nlp.initialize()
    message = str(caught.value)
    assert str(missing) in message and "[components.electra_rtd.model]" in message and "\n" not in message


def test_factory_and_architecture_resolve_through_entry_points():
    code = (
        "import spacy  # no import of spacy_electra: the entry points must do it\n"
        "from spacy.util import registry\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('electra_rtd', config={'model': {'checkpoint': '/nonexistent'}})\n"
        "print(nlp.pipe_names, registry.architectures.get('spacy_electra.ReplacedTokenDetector.v1').__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "['electra_rtd'] ReplacedTokenDetector_v1" in result.stdout


# -- bad input --------------------------------------------------------------------------------
def _bert_folder(directory: Path) -> Path:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=hf_config().vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=48)).save_pretrained(directory)
    write_vocab(directory)
    return directory


@pytest.mark.parametrize("kind", ["ElectraModel", "ElectraForSequenceClassification", "ElectraForMaskedLM", "BertModel"])
def test_checkpoint_without_a_discriminator_head_is_one_clear_error(kind, tmp_path):
    folder = tmp_path / kind
    if kind == "BertModel":
        _bert_folder(folder)
    else:
        make_hf_checkpoint(folder, kind, random_all=False)
    nlp = rtd_pipeline(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error comes alone, without a warning about left-behind heads
        with pytest.raises(CheckpointError) as caught:
            nlp.initialize()
    message = str(caught.value)
    assert "\n" not in message and str(folder) in message
    assert "no replaced-token-detection head" in message and "[components.electra_rtd.model]" in message
    assert "google/electra-small-discriminator" in message and "discriminator/ folder" in message
    assert kind in message  # what the checkpoint holds instead


def test_bad_settings_give_one_line_errors(discriminator, tmp_path):
    for config, match in [
        ({"threshold": 1.5}, "threshold=1.5 must be a probability between 0 and 1"),
        ({"threshold": -0.1}, "threshold=-0.1 must be a probability"),
        ({"spans_key": ""}, "spans_key='' must be a non-empty string"),
        ({"model": {"window": 16, "stride": 4}}, "stride=4 is less than window/2"),
        ({"model": {"window": 128, "max_batch_items": 100}}, "max_batch_items=100 cannot hold one window"),
    ]:
        with pytest.raises(ValueError, match=match):
            rtd_pipeline(discriminator[1], **config)
    make_hf_checkpoint(tmp_path / "short", "ElectraForPreTraining", random_all=False, max_position_embeddings=64)
    too_long = rtd_pipeline(tmp_path / "short")  # window = 128: known to be too long once the checkpoint is read
    with pytest.raises(ValueError, match="window=128 does not fit the model.*max_position_embeddings - 2 = 62"):
        too_long.initialize()
