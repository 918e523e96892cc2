"""electra_span_qa training: update, threshold learning on dev, SQuAD conversion, spacy train."""
from __future__ import annotations

import json

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import fix_random_seed

import spacy_electra.qa  # noqa: F401  (registers the factory and architecture)
from spacy_electra.qa.architecture import get_module
from spacy_electra.qa.convert import convert_squad, squad_to_docs

from ..conftest import make_hf_checkpoint

TOY = [
    ("The new cafe is in Paris and the old one is in London.", [("Where is the new cafe?", "Paris"), ("Where is the old one?", "London"), ("Who is he?", None)]),
    ("She was in New York and he was in Paris.", [("Where was she?", "New York"), ("Where was he?", "Paris")]),
]


def toy_examples(nlp):
    examples = []
    for text, qas in TOY:
        ref = nlp.make_doc(text)
        ref._.questions = [q for q, _ in qas]
        gold = []
        for _, answer in qas:
            if answer is None:
                gold.append({"id": "", "impossible": True, "answers": []})
            else:
                span = ref.char_span(text.index(answer), text.index(answer) + len(answer))
                gold.append({"id": "", "impossible": False, "answers": [{"text": answer, "start": span.start, "end": span.end}]})
        ref._.qa_gold = gold
        examples.append(Example(nlp.make_doc(text), ref))
    return examples


def squad_json(path):
    context = "Formed in November 1990, BSkyB became the UK's largest company. Its owner was in London."
    data = {"version": "v2.0", "data": [{"title": "Sky", "paragraphs": [{"context": context, "qas": [
        {"id": "a", "question": "When was BSkyB formed?", "is_impossible": False,
         "answers": [{"text": "November 1990", "answer_start": 10}, {"text": "1990", "answer_start": 19}]},
        {"id": "b", "question": "How big is BSkyB?", "is_impossible": False,
         "answers": [{"text": "larg", "answer_start": context.index("largest")}]},  # cuts a token
        {"id": "c", "question": "Where was the owner?", "is_impossible": False,
         "answers": [{"text": "London", "answer_start": 0}]},  # wrong offset
        {"id": "d", "question": "What is Sky's colour?", "is_impossible": True, "answers": [],
         "plausible_answers": [{"text": "London", "answer_start": 80}]},
        {"id": "e", "question": "Who?", "is_impossible": False, "answers": [{"text": "Rome", "answer_start": 3}]},
    ]}]}]}
    path.write_text(json.dumps(data))
    return context


def test_convert_squad_report_and_docbin_round_trip(tmp_path):
    context = squad_json(tmp_path / "train.json")
    report = convert_squad(tmp_path / "train.json", tmp_path / "train.spacy")
    assert (report.contexts, report.questions, report.impossible, report.answers) == (1, 5, 1, 4)
    assert (report.widened, report.relocated, report.dropped, report.unanswerable_left) == (1, 1, 1, 1)
    [doc] = DocBin().from_disk(tmp_path / "train.spacy").get_docs(spacy.blank("en").vocab)
    assert doc.text == context and len(doc._.questions) == 5
    gold = doc._.qa_gold
    assert [doc[a["start"] : a["end"]].text for a in gold[0]["answers"]] == ["November 1990", "1990"]
    assert gold[1]["answers"][0]["text"] == "larg" and doc[gold[1]["answers"][0]["start"] : gold[1]["answers"][0]["end"]].text == "largest"
    assert doc[gold[2]["answers"][0]["start"] : gold[2]["answers"][0]["end"]].text == "London"
    assert gold[3]["impossible"] and not gold[3]["answers"]
    assert not gold[4]["impossible"] and not gold[4]["answers"]


def test_convert_squad_writes_all_or_nothing(tmp_path, monkeypatch):
    """A failure while writing (a full disk) leaves the previous .spacy file whole and no
    temporary file behind."""
    squad_json(tmp_path / "train.json")
    convert_squad(tmp_path / "train.json", tmp_path / "train.spacy")
    before = (tmp_path / "train.spacy").read_bytes()

    def full_disk(self, path):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DocBin, "to_disk", full_disk)
    with pytest.raises(OSError):
        convert_squad(tmp_path / "train.json", tmp_path / "train.spacy")
    assert (tmp_path / "train.spacy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json", "train.spacy"]


def test_convert_squad_rejects_non_squad_json(tmp_path):
    from spacy_electra.convert import ConversionError

    (tmp_path / "x.json").write_text('{"rows": []}')
    with pytest.raises(ConversionError, match='no top-level "data" list'):
        squad_to_docs(tmp_path / "x.json")


@pytest.fixture
def toy_nlp(tmp_path, one_torch_thread):
    make_hf_checkpoint(tmp_path / "disc", "ElectraForPreTraining", random_all=False)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_span_qa", config={"model": {"checkpoint": str(tmp_path / "disc"), "max_length": 32, "max_query_pieces": 16, "doc_stride": 6}})
    return nlp


def test_update_learns_several_questions_per_context_and_windows(toy_nlp):
    """Rows of 32 pieces: contexts need several windows, and gold outside a window points at
    [CLS]. The loss falls and the toy answers are learned."""
    fix_random_seed(0)
    examples = toy_examples(toy_nlp)
    toy_nlp.initialize(lambda: examples)
    optimizer = toy_nlp.create_optimizer()
    optimizer.learn_rate = 3e-3
    losses = []
    for _ in range(80):
        losses.append(toy_nlp.update(examples, sgd=optimizer)["electra_span_qa"])
    assert losses[-1] < losses[0] * 0.3
    qa = toy_nlp.get_pipe("electra_span_qa")
    scores = toy_nlp.evaluate(examples)
    assert scores["qa_exact"] == 1.0 and scores["qa_no_ans_acc"] == 1.0
    answers = qa.answer(TOY[0][0], [q for q, _ in TOY[0][1]])
    assert [a.text for a in answers] == ["Paris", "London", ""]


def test_threshold_is_learned_in_training_evaluations_only(toy_nlp, tmp_path):
    examples = toy_examples(toy_nlp)
    toy_nlp.initialize(lambda: examples)
    qa = toy_nlp.get_pipe("electra_span_qa")
    qa.cfg["null_threshold"] = 123.0
    toy_nlp.evaluate(examples)
    assert qa.cfg["null_threshold"] == 123.0  # not trained in this process: no refit
    toy_nlp.update(examples, sgd=toy_nlp.create_optimizer())
    scores = toy_nlp.evaluate(examples)
    fitted = qa.cfg["null_threshold"]
    assert fitted != 123.0 and scores["qa_null_threshold"] == fitted
    toy_nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("electra_span_qa").cfg["null_threshold"] == pytest.approx(fitted, abs=1e-8)
    loaded.evaluate(examples)
    assert loaded.get_pipe("electra_span_qa").cfg["null_threshold"] == pytest.approx(fitted, abs=1e-8)


def test_spacy_train_with_the_config(tmp_path, one_torch_thread):
    from pathlib import Path

    from spacy.cli.train import train

    make_hf_checkpoint(tmp_path / "disc", "ElectraForPreTraining", random_all=False)
    squad_json(tmp_path / "squad.json")
    convert_squad(tmp_path / "squad.json", tmp_path / "train.spacy")
    config = Path(__file__).parents[2] / "configs" / "span_qa.cfg"
    train(
        config,
        tmp_path / "out",
        overrides={
            "paths.train": str(tmp_path / "train.spacy"),
            "paths.dev": str(tmp_path / "train.spacy"),
            "paths.checkpoint": str(tmp_path / "disc"),
            "components.electra_span_qa.model.max_length": 48,
            "components.electra_span_qa.model.max_query_pieces": 24,
            "components.electra_span_qa.model.doc_stride": 8,
            "training.max_steps": 4,
            "training.eval_frequency": 2,
        },
    )
    nlp = spacy.load(tmp_path / "out" / "model-last")
    meta = json.loads((tmp_path / "out" / "model-last" / "meta.json").read_text())
    assert set(meta["performance"]) >= {"qa_f1", "qa_exact", "qa_has_ans_f1", "qa_no_ans_acc"}
    qa = nlp.get_pipe("electra_span_qa")
    stored = qa.cfg["null_threshold"]
    assert stored != 0.0  # the default was replaced by the threshold fitted on dev
    dev = [Example(nlp.make_doc(doc.text), doc) for doc in DocBin().from_disk(tmp_path / "train.spacy").get_docs(nlp.vocab)]
    assert qa.fit_threshold(dev) == pytest.approx(stored, abs=1e-6)  # fitted on the final weights
    assert len(qa.answer("BSkyB was formed in 1990.", ["When?", ""])) == 2
