"""electra_span_qa: HF parity, a hand-built HF QA checkpoint, export, the pipeline API, bad input."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch

import spacy_electra.qa  # noqa: F401  (registers the factory and architecture)
from spacy_electra.qa.architecture import encode_tasks, get_module
from spacy_electra.qa.export import export_span_qa
from spacy_electra.qa.features import batch_rows, make_rows

from ..conftest import hf_config, make_hf_checkpoint, run_in_threads

# A real SQuAD 2.0 dev context (CC BY-SA 4.0) and a question about it.
SKY = (
    "Formed in November 1990 by the equal merger of Sky Television and British Satellite Broadcasting, "
    "BSkyB became the UK's largest digital subscription television company. Following BSkyB's 2014 "
    "acquisition of Sky Italia and a majority 90.04% interest in Sky Deutschland in November 2014, its "
    "holding company British Sky Broadcasting Group plc changed its name to Sky plc. The United Kingdom "
    "operations also changed the company name from British Sky Broadcasting Limited to Sky UK Limited, "
    "still trading as Sky."
)
QUESTION = "What was BSkyB in the UK?"
ANSWER = "largest digital subscription television"  # from the start word to the end word
START_WORD, END_WORD = "largest", "television"
SMALL = {"max_length": 64, "max_query_pieces": 16, "doc_stride": 24, "max_batch_items": 2048}


def qa_pipeline(checkpoint: Path, **model):
    nlp = spacy.blank("en")
    config = {"model": {"checkpoint": str(checkpoint), **SMALL, **model}}
    nlp.add_pipe("electra_span_qa", config=config)
    return nlp


def words_of(*texts: str):
    return sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})


def hand_built_checkpoint(directory: Path, extra_text: str = "") -> Path:
    """An HF ElectraForQuestionAnswering whose layers pass the (normalised) word embeddings
    through unchanged (zero attention and feed-forward outputs, zero position and type
    embeddings), with a qa_outputs layer that reads dimension 0 as the start logit and
    dimension 1 as the end logit. Only START_WORD has dimension 0 and only END_WORD dimension 1;
    [CLS] has a smaller share of both, so the null score loses to START..END when both words are
    in the context and wins otherwise."""
    import transformers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = specials + [w for w in words_of(SKY, QUESTION, extra_text) if w not in chars] + chars + ["##" + c for c in chars]
    config = hf_config(vocab_size=len(vocab), embedding_size=32, hidden_size=32, hidden_dropout_prob=0.1)
    model = transformers.ElectraForQuestionAnswering(config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        emb = model.electra.embeddings
        words = torch.randn(len(vocab), 32, generator=gen)
        words[:, :2] = 0.0
        words[vocab.index(START_WORD)] = 0.0
        words[vocab.index(START_WORD), 0] = 8.0
        words[vocab.index(END_WORD)] = 0.0
        words[vocab.index(END_WORD), 1] = 8.0
        words[vocab.index("[CLS]")] = 0.0
        words[vocab.index("[CLS]"), :2] = 6.0
        emb.word_embeddings.weight.copy_(words)
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        for layer in model.electra.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
        model.qa_outputs.weight.zero_()
        model.qa_outputs.weight[0, 0] = model.qa_outputs.weight[1, 1] = 10.0
        model.qa_outputs.bias.zero_()
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    return directory


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory):
    return hand_built_checkpoint(tmp_path_factory.mktemp("hand_built"))


@pytest.fixture(scope="module")
def hand_nlp(hand_built):
    nlp = qa_pipeline(hand_built)
    nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def random_qa(tmp_path_factory):
    """A random HF ElectraForQuestionAnswering (every tensor random) and a pipeline on it."""
    directory = tmp_path_factory.mktemp("random_qa")
    hf = make_hf_checkpoint(directory, "ElectraForQuestionAnswering")
    nlp = qa_pipeline(directory)
    nlp.initialize()
    return hf, nlp, directory


# -- HF interop -------------------------------------------------------------------------------
def test_logits_equal_hf_on_the_same_piece_ids(random_qa):
    hf, nlp, _ = random_qa
    qa = nlp.get_pipe("electra_span_qa")
    doc = nlp.make_doc("The new city of Paris is in France, and New York is a city too. " * 3)
    questions = ["Where is Paris?", "What is New York?"]
    tasks = [t for ts in encode_tasks(qa.model, [[t.text for t in doc]], [questions])[0] for t in ts]
    rows, logits = qa.model.predict(tasks)
    assert len(rows) > 2  # several windows per question
    wp = get_module(qa.model).wordpiece
    chunks = batch_rows(rows, tasks, max_batch_items=SMALL["max_batch_items"], cls_id=wp.cls_id, sep_id=wp.sep_id, pad_id=wp.pad_id)
    with torch.no_grad():
        for chunk in chunks:
            out = hf(input_ids=torch.from_numpy(chunk.ids), attention_mask=torch.from_numpy(chunk.mask), token_type_ids=torch.from_numpy(chunk.types))
            for b, r in enumerate(chunk.rows):
                n = rows[r].length
                assert chunk.types[b, : n].tolist() == [0] * rows[r].offset + [1] * (n - rows[r].offset)
                np.testing.assert_allclose(logits[r][:, 0], out.start_logits[b, :n].numpy(), atol=1e-5, rtol=1e-5)
                np.testing.assert_allclose(logits[r][:, 1], out.end_logits[b, :n].numpy(), atol=1e-5, rtol=1e-5)


def test_hand_built_hf_checkpoint_answers_the_span_between_its_two_words(hand_built):
    nlp = qa_pipeline(hand_built)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # qa_outputs is used, not "left behind"
        nlp.initialize()
    [answer] = nlp.get_pipe("electra_span_qa").answer(SKY, [QUESTION])
    assert answer.text == ANSWER
    assert (answer.span.start_char, answer.span.end_char) == (SKY.index(ANSWER), SKY.index(ANSWER) + len(ANSWER))
    assert answer.score > answer.null_score


def test_context_with_no_answer_to_anything(hand_nlp):
    context = "Formed in November 1990 by the equal merger of Sky Television and British Satellite Broadcasting."
    answers = hand_nlp.get_pipe("electra_span_qa").answer(context, [QUESTION, "Who formed it?"])
    assert [a.no_answer for a in answers] == [True, True]
    assert all(a.null_score > a.score for a in answers)
    assert all(a.text == "" and a.span is None for a in answers)


def test_export_loads_in_transformers_with_no_missing_keys(random_qa, tmp_path):
    import transformers

    hf, nlp, _ = random_qa
    qa = nlp.get_pipe("electra_span_qa")
    qa.cfg["null_threshold"] = 1.5
    out = export_span_qa(nlp, tmp_path / "hf")
    back, info = transformers.ElectraForQuestionAnswering.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for name, value in hf.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], value, atol=0, rtol=0)
    assert back.config.null_score_diff_threshold == 1.5
    tokenizer = transformers.ElectraTokenizerFast.from_pretrained(out)
    assert tokenizer("where is paris")["input_ids"][0] == get_module(qa.model).wordpiece.cls_id
    again = qa_pipeline(out)
    again.initialize()
    assert again.get_pipe("electra_span_qa").cfg["null_threshold"] == 1.5  # the threshold travels with the export
    explicit = spacy.blank("en")
    explicit.add_pipe("electra_span_qa", config={"model": {"checkpoint": str(out), **SMALL}, "null_threshold": -2.0})
    explicit.initialize()
    assert explicit.get_pipe("electra_span_qa").cfg["null_threshold"] == -2.0  # a configured value wins
    qa.cfg["null_threshold"] = 0.0


def test_trained_component_exports_what_it_predicts(tmp_path):
    """A component trained from a pretraining checkpoint (fresh qa_outputs) exports weights that
    give HF the same logits, and re-imports with the same answers."""
    import transformers

    from .test_span_qa_training import toy_examples

    make_hf_checkpoint(tmp_path / "disc", "ElectraForPreTraining", random_all=False)
    nlp = qa_pipeline(tmp_path / "disc")
    examples = toy_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = nlp.create_optimizer()
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    export_span_qa(nlp.get_pipe("electra_span_qa"), tmp_path / "hf")
    back = transformers.ElectraForQuestionAnswering.from_pretrained(tmp_path / "hf").eval()
    module = get_module(nlp.get_pipe("electra_span_qa").model)
    ids = torch.tensor([[2, 10, 11, 3, 12, 13, 14, 3]])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours = module([(ids, types, mask)])[0]
        theirs = back(input_ids=ids, attention_mask=mask, token_type_ids=types)
    torch.testing.assert_close(ours[..., 0], theirs.start_logits, atol=1e-5, rtol=1e-5)
    again = qa_pipeline(tmp_path / "hf")
    again.initialize()
    text, question = examples[0].reference.text, examples[0].reference._.questions[0]
    first = nlp.get_pipe("electra_span_qa").answer(text, [question])[0]
    second = again.get_pipe("electra_span_qa").answer(text, [question])[0]
    assert (first.text, first.score) == (second.text, pytest.approx(second.score, abs=1e-5))


# -- pipeline API -------------------------------------------------------------------------------
def test_questions_as_doc_extension_and_spans(hand_nlp):
    doc = hand_nlp.make_doc(SKY)
    doc._.questions = ["", QUESTION]
    doc = hand_nlp(doc)
    answers = doc._.answers
    assert [a.question for a in answers] == doc._.questions
    assert answers[0].no_answer and answers[1].text == ANSWER
    [span] = doc.spans["qa"]
    assert span.label_ == "1" and span.text == ANSWER


def test_docs_without_questions_are_left_alone(hand_nlp):
    doc = hand_nlp(SKY)
    assert doc._.answers is None and "qa" not in doc.spans


def test_pipe_as_tuples_with_context_dict_in_two_processes(hand_nlp):
    inputs = [(SKY, {"questions": [QUESTION], "id": i}) for i in range(4)] + [("No answer here.", {"questions": ["Why?"]})]
    for n_process in (1, 2):
        outputs = list(hand_nlp.pipe(inputs, as_tuples=True, n_process=n_process, batch_size=2))
        assert [ctx for _, ctx in outputs] == [ctx for _, ctx in inputs]
        assert [doc._.answers[0].text for doc, _ in outputs] == [ANSWER] * 4 + [""]
        assert [len(doc.spans["qa"]) for doc, _ in outputs] == [1, 1, 1, 1, 0]


def test_answers_survive_docbin_and_disk_round_trip(hand_nlp, tmp_path):
    from spacy.tokens import DocBin

    qa = hand_nlp.get_pipe("electra_span_qa")
    qa.cfg["null_threshold"] = -3.25
    [answer] = qa.answer(SKY, [QUESTION])
    doc = answer.span.doc
    restored = list(DocBin(docs=[doc], store_user_data=True).get_docs(hand_nlp.vocab))[0]
    assert restored._.answers[0].text == ANSWER and restored.spans["qa"][0].label_ == "0"
    hand_nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    again = loaded.get_pipe("electra_span_qa")
    assert again.cfg["null_threshold"] == -3.25
    assert again.answer(SKY, [QUESTION])[0].score == pytest.approx(answer.score, abs=1e-5)
    qa.cfg["null_threshold"] = 0.0


def test_predict_is_thread_safe_and_leaves_dropout_off(hand_nlp):
    """The checkpoint has dropout 0.1: a prediction that depended on the shared module's
    train/eval mode would give different scores (the module is put in train mode on purpose)."""
    qa = hand_nlp.get_pipe("electra_span_qa")
    get_module(qa.model).train()
    contexts = [SKY[: 100 + 40 * i] for i in range(6)]
    expected = [[a.score for a in qa.answer(c, [QUESTION, "Who?"])] for c in contexts]
    got = run_in_threads(
        lambda i: [[a.score for a in qa.answer(contexts[i], [QUESTION, "Who?"])] for _ in range(3)], len(contexts)
    )
    assert all(got[i] == [expected[i]] * 3 for i in range(len(contexts)))
    get_module(qa.model).eval()


def test_layer_wise_lr_decay_reaches_encoder_layers_not_the_head(random_qa):
    _, nlp, directory = random_qa
    nlp2 = qa_pipeline(directory, layer_lr_decay=0.5)
    nlp2.initialize()
    shim = nlp2.get_pipe("electra_span_qa").model.shims[0]
    names = [n for n, _ in shim._model.named_parameters()]
    assert shim.lr_scale("qa_outputs.weight") == 1.0
    assert shim.lr_scale("encoder.layers.1.output.weight") == 0.5  # top layer (2 of 2)
    assert shim.lr_scale("encoder.layers.0.output.weight") == 0.25
    assert shim.lr_scale("encoder.embeddings.word.weight") == 0.125
    assert "qa_outputs.weight" in names and "encoder.layers.1.output.weight" in names


# -- bad input --------------------------------------------------------------------------------
def test_empty_and_whitespace_questions_get_no_answer_without_scores(hand_nlp):
    answers = hand_nlp.get_pipe("electra_span_qa").answer(SKY, ["", "   \n", QUESTION])
    assert [(a.question, a.no_answer, a.score, a.null_score) for a in answers[:2]] == [("", True, None, None), ("   \n", True, None, None)]
    assert answers[2].text == ANSWER


def test_empty_context(hand_nlp):
    answers = hand_nlp.get_pipe("electra_span_qa").answer("", [QUESTION, "Who?"])
    assert [(a.no_answer, a.score) for a in answers] == [(True, None), (True, None)]
    assert len(answers[0].span is None and hand_nlp.make_doc("")) == 0


def test_question_longer_than_the_window_is_truncated_with_a_warning(hand_nlp):
    long_question = "what was " * 60 + QUESTION  # far more than max_length = 64 pieces
    with pytest.warns(UserWarning, match=r"1 question\(s\) longer than max_query_pieces=16 were truncated"):
        [answer] = hand_nlp.get_pipe("electra_span_qa").answer(SKY, [long_question])
    assert answer.text == ANSWER and answer.question == long_question


def test_context_shorter_than_the_question(hand_nlp):
    [answer] = hand_nlp.get_pipe("electra_span_qa").answer("largest television", ["What was the largest digital subscription television company in the UK?"])
    assert answer.text == "largest television"


def test_fifty_questions_for_one_context_in_order(hand_nlp):
    """The hand-built model answers any question about SKY; every 7th question is empty."""
    questions = [f"What was BSkyB {i}?" if i % 7 else "" for i in range(50)]
    answers = hand_nlp.get_pipe("electra_span_qa").answer(SKY, questions)
    assert [a.question for a in answers] == questions
    assert [a.text for a in answers] == ["" if i % 7 == 0 else ANSWER for i in range(50)]
    doc = answers[1].span.doc
    assert [s.label_ for s in doc.spans["qa"]] == [str(i) for i in range(50) if i % 7]


def test_fifty_thousand_token_context_drops_no_piece(hand_built):
    nlp = qa_pipeline(hand_built, max_length=256, doc_stride=200)
    nlp.initialize()
    filler = "Sky plc changed its name . " * 10_000  # 60,000 tokens before the answer
    context = filler + SKY
    doc = nlp.make_doc(context)
    assert len(doc) > 50_000
    qa = nlp.get_pipe("electra_span_qa")
    [tasks], _ = encode_tasks(qa.model, [[t.text for t in doc]], [[QUESTION]])
    rows = make_rows(tasks, max_length=256, doc_stride=200)
    covered = np.zeros(len(tasks[0].context.ids), dtype=bool)
    for row in rows:
        covered[row.start : row.end] = True
    assert covered.all() and max(row.length for row in rows) <= 256
    [answer] = qa.answer(doc, [QUESTION])
    assert answer.text == ANSWER and answer.span.start_char == len(filler) + SKY.index(ANSWER)


def test_bad_arguments_give_one_line_errors(hand_nlp, hand_built):
    qa = hand_nlp.get_pipe("electra_span_qa")
    with pytest.raises(TypeError, match="wrap a single question"):
        qa.answer(SKY, QUESTION)
    doc = hand_nlp.make_doc(SKY)
    doc._.questions = QUESTION
    with pytest.raises(TypeError, match="list of strings"):
        hand_nlp(doc)
    with pytest.raises(ValueError, match="leaves no room for context"):
        qa_pipeline(hand_built, max_length=20, max_query_pieces=17)
    too_long = qa_pipeline(hand_built, max_length=1024)  # known to be too long only once the checkpoint is read
    with pytest.raises(ValueError, match="max_position_embeddings=512"):
        too_long.initialize()
