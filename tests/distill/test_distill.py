"""spacy-electra distill: the student's shape and start, the loss, training, saving, inference,
resuming, and one-line errors that leave nothing written."""
import json
import random

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from thinc.api import NumpyOps
from typer.testing import CliRunner

from spacy_electra.cli import app
from spacy_electra.distill import DistillConfig, DistillError, agreement, build_student, distill, load_config, pick_layers
from spacy_electra.distill.corpus import has_gold, read_corpus
from spacy_electra.distill.student import encoder_sizes
from spacy_electra.distill.trainer import sigmoid_distill, softmax_distill
from spacy_electra.inference import set_inference
from spacy_electra.layers.torch_encoder import get_encoder

from ..conftest import make_hf_checkpoint, trf_config

PLACES = ["london", "paris", "york"]
OTHER = ["city", "cafe", "new", "the", "a"]
LISTENER = {"@architectures": "spacy_electra.ElectraTransformerListener.v1", "upstream": "electra_transformer"}


def sentence(rng):
    return [rng.choice(PLACES + OTHER) for _ in range(rng.randint(3, 6))]


def gold_example(nlp, words):
    ref = Doc(nlp.vocab, words=words)
    for token in ref:
        token.tag_ = "P" if token.text in PLACES else "O"
    ref.ents = [Span(ref, i, i + 1, label="LOC") for i, w in enumerate(words) if w in PLACES]
    has_place = any(w in PLACES for w in words[:2])
    ref.cats = {"PLACE": float(has_place), "NONE": float(not has_place)}
    return Example(Doc(nlp.vocab, words=words), ref)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A 3-layer teacher: tagger and NER on a shared electra_transformer, textcat with its own
    encoder; a few training steps."""
    base = tmp_path_factory.mktemp("distill")
    checkpoint = base / "disc"
    make_hf_checkpoint(checkpoint, "ElectraForPreTraining", random_all=False, num_hidden_layers=3)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(checkpoint)})
    nlp.add_pipe("electra_tagger", name="tagger", config={"model": {"tok2vec": LISTENER}})
    nlp.add_pipe("electra_ner", name="ner", config={"model": {"tok2vec": LISTENER}})
    nlp.add_pipe("electra_textcat", name="textcat", config={"model": {"tok2vec": trf_config(checkpoint)}})
    rng = random.Random(0)
    examples = [gold_example(nlp, sentence(rng)) for _ in range(16)]
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    for _ in range(8):
        nlp.update(examples, sgd=optimizer)
    path = base / "teacher"
    nlp.to_disk(path)
    corpus = base / "corpus.txt"
    corpus.write_text("\n".join(" ".join(sentence(rng)) for _ in range(24)) + "\n")
    gold = base / "dev.spacy"
    DocBin(docs=[gold_example(nlp, sentence(rng)).reference for _ in range(6)]).to_disk(gold)
    return {"path": path, "corpus": corpus, "dev": gold, "checkpoint": checkpoint, "base": base}


def settings(**training):
    values = dict(max_steps=6, batch_size=8, learn_rate=0.003, warmup_steps=0, dropout=0.0, eval_every=3,
                  checkpoint_every=2, progress_bar=False)
    values.update(training)
    return DistillConfig.from_dict({"student": {"layers": 1}, "training": values})


def texts(teacher):
    return teacher["corpus"].read_text().splitlines()[:12]


# -- pieces ----------------------------------------------------------------------------------
def test_layer_pick_rule_is_evenly_spaced_and_ends_at_the_top():
    assert pick_layers(6, 3) == [1, 3, 5]
    assert pick_layers(12, 4) == [2, 5, 8, 11]
    assert pick_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert pick_layers(3, 1) == [2]
    assert pick_layers(4, 4) == [0, 1, 2, 3]


@pytest.mark.parametrize("fn", [softmax_distill, sigmoid_distill])
def test_soft_target_gradient_matches_finite_differences(fn):
    ops = NumpyOps()
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(3, 4)).astype("float64"), rng.normal(size=(3, 4)).astype("float64")
    loss, grad = fn(ops, student, teacher, 2.0)
    assert loss > 0 and fn(ops, teacher, teacher, 2.0)[0] == pytest.approx(0.0, abs=1e-6)
    eps = 1e-5
    for i, j in [(0, 0), (1, 2), (2, 3)]:
        up, down = student.copy(), student.copy()
        up[i, j] += eps
        down[i, j] -= eps
        numeric = (fn(ops, up, teacher, 2.0)[0] - fn(ops, down, teacher, 2.0)[0]) / (2 * eps)
        assert grad[i, j] == pytest.approx(numeric, rel=1e-3, abs=1e-5)


def test_corpus_formats_keep_gold_only_from_spacy_files(teacher, tmp_path):
    nlp = spacy.load(teacher["path"])
    (tmp_path / "a.jsonl").write_text('{"text": "the london cafe"}\nnot json\n{"meta": 1}\n{"text": "  "}\n')
    jsonl = read_corpus(nlp, tmp_path / "a.jsonl")
    assert [eg.predicted.text for eg in jsonl] == ["the london cafe"] and not has_gold(jsonl[0])
    gold = read_corpus(nlp, teacher["dev"])
    assert len(gold) == 6 and all(has_gold(eg) for eg in gold)
    assert len(read_corpus(nlp, teacher["corpus"], max_docs=5)) == 5
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(DistillError, match="no usable text"):
        read_corpus(nlp, tmp_path / "empty.txt")


def test_shipped_config_holds_the_defaults():
    assert load_config("configs/distill.cfg") == DistillConfig()
    with pytest.raises(DistillError, match="student.layer_map"):
        load_config(None, {"student.layer_map": "top"})
    with pytest.raises(DistillError, match="must name 2 teacher layers"):
        load_config(None, {"student.layers": 2, "student.layer_map": [0]})


# -- the student -------------------------------------------------------------------------------
def test_student_has_the_teachers_components_and_labels_and_starts_from_its_layers(teacher):
    nlp = spacy.load(teacher["path"])
    student, picked = build_student(teacher["path"], settings().student)
    assert student.pipe_names == nlp.pipe_names
    for name in ("tagger", "ner", "textcat"):
        assert student.get_pipe(name).labels == nlp.get_pipe(name).labels
    assert picked == {"electra_transformer": [2], "textcat": [2]}
    assert encoder_sizes(student) == {"electra_transformer": (1, 32), "textcat": (1, 32)}
    assert encoder_sizes(nlp) == {"electra_transformer": (3, 32), "textcat": (3, 32)}
    for name in ("electra_transformer", "textcat"):
        small, big = get_encoder(student.get_pipe(name).model).encoder, get_encoder(nlp.get_pipe(name).model).encoder
        for key, value in small.layers[0].state_dict().items():
            assert torch.equal(value, big.layers[2].state_dict()[key]), key
        for key, value in small.embeddings.state_dict().items():
            assert torch.equal(value, big.embeddings.state_dict()[key]), key
    docs = list(student.pipe(["the london cafe", "paris is new"]))
    assert all(doc.cats for doc in docs)


def test_narrower_student_trains_saves_and_loads(teacher, tmp_path):
    config = DistillConfig.from_dict({"student": {"layers": 2, "hidden_size": 16}, "training": {
        "max_steps": 2, "batch_size": 4, "warmup_steps": 0, "progress_bar": False}})
    result = distill(teacher["path"], tmp_path / "out", teacher["corpus"], config)
    assert result["sizes"] == {"electra_transformer": (2, 16), "textcat": (2, 16)}
    student = spacy.load(tmp_path / "out" / "model-last")
    assert encoder_sizes(student) == {"electra_transformer": (2, 16), "textcat": (2, 16)}
    doc = student("the london cafe")
    assert len(doc.cats) == 2 and all(t.tag_ for t in doc)


# -- training --------------------------------------------------------------------------------
def test_loss_falls_and_the_student_agrees_more_with_the_teacher(teacher, tmp_path):
    nlp = spacy.load(teacher["path"])
    before = agreement(nlp, build_student(teacher["path"], settings().student)[0], texts(teacher))
    result = distill(teacher["path"], tmp_path / "out", teacher["corpus"], settings(max_steps=30, checkpoint_every=30),
                     dev=teacher["dev"])
    log = [json.loads(line) for line in (tmp_path / "out" / "distill_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 31))
    first = sum(sum(r["loss"].values()) for r in log[:3])
    last = sum(sum(r["loss"].values()) for r in log[-3:])
    assert last < first
    after = agreement(nlp, spacy.load(tmp_path / "out" / "model-last"), texts(teacher))
    assert after > before
    assert result["best"] is not None and (tmp_path / "out" / "model-best" / "config.cfg").exists()
    meta = json.loads((tmp_path / "out" / "model-last" / "meta.json").read_text())
    assert meta["distill"]["encoders"] == {"electra_transformer": {"layers": 1, "hidden_size": 32}, "textcat": {"layers": 1, "hidden_size": 32}}
    assert meta["distill"]["step"] == 30 and "ents_f" in meta["performance"]
    assert "dev_score" in log[2]


def test_student_round_trips_and_runs_int8(teacher, tmp_path):
    distill(teacher["path"], tmp_path / "out", teacher["corpus"], settings(max_steps=2))
    student = spacy.load(tmp_path / "out" / "model-last")
    student.to_disk(tmp_path / "again")
    again = spacy.load(tmp_path / "again")
    sample = texts(teacher)
    for a, b in zip(student.pipe(sample), again.pipe(sample)):
        assert [t.tag_ for t in a] == [t.tag_ for t in b]
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        assert a.cats == b.cats
    fp32 = [doc.cats["PLACE"] for doc in again.pipe(sample)]
    assert set(set_inference(again, "int8").values()) == {"int8"}
    int8 = [doc.cats["PLACE"] for doc in again.pipe(sample)]
    assert np.allclose(fp32, int8, atol=0.1)


def test_an_interrupted_run_continues_where_it_stopped(teacher, tmp_path):
    whole = distill(teacher["path"], tmp_path / "whole", teacher["corpus"], settings())

    def stop(step, losses):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(teacher["path"], tmp_path / "cut", teacher["corpus"], settings(), on_step=stop)
    assert not (tmp_path / "cut" / "model-last").exists()
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last" / "state.pt", weights_only=True)
    assert state["step"] == 2
    resumed = distill(teacher["path"], tmp_path / "cut", teacher["corpus"], settings())
    assert resumed["step"] == whole["step"] == 6
    log = [json.loads(line)["step"] for line in (tmp_path / "cut" / "distill_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]
    a, b = spacy.load(tmp_path / "whole" / "model-last"), spacy.load(tmp_path / "cut" / "model-last")
    for name in ("electra_transformer", "textcat"):
        wa, wb = get_encoder(a.get_pipe(name).model).state_dict(), get_encoder(b.get_pipe(name).model).state_dict()
        for key in wa:
            assert torch.allclose(wa[key], wb[key], atol=1e-5), (name, key)
    assert np.allclose(a.get_pipe("ner").model.get_ref("output_layer").get_param("W"),
                       b.get_pipe("ner").model.get_ref("output_layer").get_param("W"), atol=1e-5)


# -- bad input -------------------------------------------------------------------------------
def run_cli(*args):
    return CliRunner().invoke(app, ["distill", *map(str, args), "--training.progress_bar", "false"])


def one_line_error(result, match):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and match in lines[0], result.output


def test_cli_distills_from_a_gold_corpus(teacher, tmp_path):
    """The .spacy corpus has tags, entities and cats: every head's gold term is used."""
    result = run_cli(teacher["path"], tmp_path / "out", "--corpus", teacher["dev"], "--layers", 1, "--max-steps", 2,
                     "--training.batch_size", 4, "--loss.gold_weight", 1.0)
    assert result.exit_code == 0, result.output
    assert "after 2 steps (electra_transformer: 1 layers, hidden 32, textcat: 1 layers, hidden 32)" in result.output


def test_teacher_without_a_distillable_component(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "teacher")
    (tmp_path / "c.txt").write_text("the city\n")
    one_line_error(run_cli(tmp_path / "teacher", tmp_path / "out", "--corpus", tmp_path / "c.txt"), "no component to distill")
    assert not (tmp_path / "out").exists()


def test_student_larger_than_the_teacher(teacher, tmp_path):
    one_line_error(run_cli(teacher["path"], tmp_path / "out", "--corpus", teacher["corpus"], "--layers", 4), "larger than the teacher")
    one_line_error(run_cli(teacher["path"], tmp_path / "out", "--corpus", teacher["corpus"], "--hidden-size", 64), "larger than the teacher")
    assert not (tmp_path / "out").exists()


def test_corpus_without_usable_text(teacher, tmp_path):
    (tmp_path / "blank.jsonl").write_text('{"id": 1}\n\n')
    one_line_error(run_cli(teacher["path"], tmp_path / "out", "--corpus", tmp_path / "blank.jsonl"), "no usable text")
    assert not (tmp_path / "out").exists()


def test_existing_student_with_other_labels(teacher, tmp_path):
    out = tmp_path / "out"
    assert run_cli(teacher["path"], out, "--corpus", teacher["corpus"], "--layers", 1, "--max-steps", 2).exit_code == 0
    other = spacy.load(teacher["path"])
    other.get_pipe("textcat").cfg["labels"] = ["NONE", "OTHER"]
    other.to_disk(tmp_path / "other")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    stamp = (out / "checkpoints" / "last" / "state.pt").stat().st_mtime_ns
    one_line_error(run_cli(tmp_path / "other", out, "--corpus", teacher["corpus"], "--layers", 1, "--max-steps", 4), "other components or labels")
    one_line_error(run_cli(teacher["path"], out, "--corpus", teacher["corpus"], "--layers", 1, "--training.learn_rate", 0.5), "other settings")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert (out / "checkpoints" / "last" / "state.pt").stat().st_mtime_ns == stamp


def test_hidden_state_loss_trains_the_encoders_and_survives_a_resume(teacher, tmp_path):
    config = DistillConfig.from_dict({"student": {"layers": 1}, "loss": {"hidden_weight": 1.0, "soft_weight": 0.1, "gold_weight": 0.0},
                                      "training": {"max_steps": 8, "batch_size": 8, "learn_rate": 0.003, "warmup_steps": 0,
                                                   "dropout": 0.0, "checkpoint_every": 4, "progress_bar": False}})
    seen = []

    def stop(step, losses):
        seen.append(losses)
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(teacher["path"], tmp_path / "out", teacher["corpus"], config, on_step=stop)
    distill(teacher["path"], tmp_path / "out", teacher["corpus"], config, on_step=lambda step, losses: seen.append(losses))
    assert [set(losses) for losses in seen] == [{"tagger", "ner", "textcat", "hidden:electra_transformer", "hidden:textcat"}] * 9
    for name in ("hidden:electra_transformer", "hidden:textcat"):
        assert seen[-1][name] < seen[0][name]
    with pytest.raises(DistillError, match="teacher's width"):
        DistillConfig.from_dict({"student": {"hidden_size": 16}, "loss": {"hidden_weight": 1.0}})


def test_multilabel_textcat_distills_from_a_gold_corpus(teacher, tmp_path):
    """A sigmoid head alone (own encoder), trained from a .spacy corpus whose gold cats feed
    the gold term."""
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_textcat_multilabel", name="labels", config={"model": {"tok2vec": trf_config(teacher["checkpoint"])}})
    rng = random.Random(3)
    examples = []
    for _ in range(8):
        words = sentence(rng)
        examples.append(Example.from_dict(Doc(nlp.vocab, words=words), {"cats": {"PLACE": float(any(w in PLACES for w in words)), "CAFE": float("cafe" in words)}}))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "teacher")
    DocBin(docs=[eg.reference for eg in examples]).to_disk(tmp_path / "train.spacy")
    seen = []
    result = distill(tmp_path / "teacher", tmp_path / "out", tmp_path / "train.spacy", settings(max_steps=3, batch_size=4),
                     dev=tmp_path / "train.spacy", on_step=lambda step, losses: seen.append(losses["labels"]))
    assert result["sizes"] == {"labels": (1, 32)} and len(seen) == 3 and result["best"] is not None
    doc = spacy.load(tmp_path / "out" / "model-last")("the london cafe")
    assert set(doc.cats) == {"PLACE", "CAFE"}


def test_teacher_folder_that_is_no_pipeline(tmp_path):
    (tmp_path / "c.txt").write_text("the city\n")
    one_line_error(run_cli(tmp_path, tmp_path / "out", "--corpus", tmp_path / "c.txt"), "not a trained spaCy pipeline folder")
    assert not (tmp_path / "out").exists()


def test_a_component_that_listens_but_cannot_be_distilled_is_refused(teacher, tmp_path):
    nlp = spacy.load(teacher["path"])
    nlp.add_pipe("tagger", name="spacy_tagger", config={"model": {"tok2vec": {"@architectures": "spacy_electra.ElectraListener.v1"}}})
    examples = [gold_example(nlp, sentence(random.Random(i))) for i in range(4)]
    nlp.get_pipe("electra_transformer").find_listeners(nlp.get_pipe("spacy_tagger"))
    nlp.get_pipe("spacy_tagger").initialize(lambda: examples, nlp=nlp)
    nlp.to_disk(tmp_path / "teacher")
    one_line_error(run_cli(tmp_path / "teacher", tmp_path / "out", "--corpus", teacher["corpus"]), "spacy_tagger listen to 'electra_transformer'")
    assert not (tmp_path / "out").exists()


def test_student_runs_onnx_int8(teacher, tmp_path):
    pytest.importorskip("onnxruntime")
    distill(teacher["path"], tmp_path / "out", teacher["corpus"], settings(max_steps=1))
    student = spacy.load(tmp_path / "out" / "model-last")
    fp32 = [doc.cats["PLACE"] for doc in student.pipe(texts(teacher))]
    assert set(set_inference(student, "onnx-int8").values()) == {"onnx-int8"}
    assert np.allclose(fp32, [doc.cats["PLACE"] for doc in student.pipe(texts(teacher))], atol=0.1)
