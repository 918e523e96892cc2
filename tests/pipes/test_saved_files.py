"""A saved pipeline's files are untrusted input: an edited cfg, a cfg from another pipeline, a
truncated or random model file: each is one error at spacy.load naming the component's folder."""
import json
import shutil

import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example

from ..conftest import make_hf_checkpoint, trf_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    make_hf_checkpoint(root / "ckpt", "ElectraForPreTraining")
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config={"model": {"tok2vec": trf_config(root / "ckpt", window=16, stride=12)}})
    doc = nlp.make_doc("the london cafe is new")
    doc.ents = [Span(doc, 1, 2, label="LOC"), Span(doc, 2, 3, label="ORG")]
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
    nlp.to_disk(root / "pipeline")
    return root / "pipeline"


@pytest.fixture
def copy(saved, tmp_path):
    path = tmp_path / "pipeline"
    shutil.copytree(saved, path)
    return path


def test_a_good_copy_loads(copy):
    assert spacy.load(copy)("the london cafe").text == "the london cafe"


def test_a_float_in_the_cfg_survives_saving(saved, tmp_path):
    """spaCy writes cfg floats rounded (10 decimals): a learned threshold must not look edited."""
    nlp = spacy.load(saved)
    nlp.get_pipe("electra_ner").cfg["learned"] = 5.740772008942119
    nlp.to_disk(tmp_path / "again")
    assert spacy.load(tmp_path / "again").get_pipe("electra_ner").cfg["learned"] == pytest.approx(5.740772008942119)


def test_an_edited_cfg_is_refused(copy):
    cfg = json.loads((copy / "electra_ner" / "cfg").read_text())
    cfg["labels"] = ["LOC"]  # one label dropped: the model still has the rows of two
    (copy / "electra_ner" / "cfg").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"electra_ner: the component's cfg does not match"):
        spacy.load(copy)


def test_a_cfg_with_another_label_count_is_refused_even_without_the_digest(copy):
    """The digest is checked first; the label count stands on its own too."""
    from spacy_electra.pipes.heads import ElectraHead

    nlp = spacy.load(copy)
    pipe = nlp.get_pipe("electra_ner")
    assert isinstance(pipe, ElectraHead)
    pipe.cfg["labels"] = ["LOC", "ORG", "PER"]
    with pytest.raises(ValueError, match=r"has 13 outputs for its labels but its model has 9"):
        pipe.check_loaded("electra_ner")


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_a_damaged_model_file_names_its_folder(copy, damage):
    model = copy / "electra_ner" / "model"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 3] if damage == "truncate" else bytes(range(256)) * 64)
    with pytest.raises(ValueError) as caught:
        spacy.load(copy)
    message = str(caught.value)
    assert "electra_ner" in message and "restore" in message and "\n" not in message
