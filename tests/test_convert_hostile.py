"""Hardening of the converters: the CoNLL-U tree check does linear work (counted, not timed),
digits that ``str.isdigit`` accepts but ``int`` refuses are one-line errors, and the SQuAD
converter checks its file against the schema, so every malformed file is one line naming the
file, where and the fix."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import List, Optional

import pytest
from typer.testing import CliRunner

from spacy_electra import convert
from spacy_electra.convert import ConversionError, conllu_to_docs, tsv_to_docs
from spacy_electra.qa.convert import convert_squad, squad_to_docs

UD_WORD = "{}\t{}\t_\tX\tX\t_\t{}\tdep\t_\t_\n"


class Counted(int):
    """A head value that counts the operations done on it: comparisons, subtraction, hashing.
    The tree check's work is (at least) one such operation per step it takes."""

    ops = 0

    def _count(self) -> None:
        Counted.ops += 1

    def __eq__(self, other):
        self._count()
        return int(self) == int(other)

    def __ne__(self, other):
        self._count()
        return int(self) != int(other)

    def __gt__(self, other):
        self._count()
        return int(self) > int(other)

    def __lt__(self, other):
        self._count()
        return int(self) < int(other)

    def __sub__(self, other):
        self._count()
        return Counted(int(self) - int(other))

    def __hash__(self):
        self._count()
        return int.__hash__(self)


def tree_check_ops(heads: List[int]) -> int:
    sent = convert._UdSentence(first_line=1, heads=[Counted(h) for h in heads], word_lines=list(range(1, len(heads) + 1)))
    Counted.ops = 0
    convert._check_tree("t.conllu", sent)
    return Counted.ops


def forward_chain(n: int) -> List[int]:
    """Word i's head is word i + 1; the last word is the root: every walk from the front is long."""
    return [i + 2 for i in range(n - 1)] + [0]


def backward_chain(n: int) -> List[int]:
    return [0] + [i for i in range(1, n)]


def random_tree(n: int, seed: int = 0) -> List[int]:
    """Each word's head a random earlier word (in a shuffled order), one root."""
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    heads = [0] * n
    for k, word in enumerate(order[1:], start=1):
        heads[word] = order[rng.randrange(k)] + 1
    return heads


@pytest.mark.parametrize("shape", [forward_chain, backward_chain, random_tree])
def test_tree_check_work_is_linear_in_the_sentence_length(shape):
    """Operations on head values, 1,000 -> 4,000 words: at most 4 per word at either size (the
    old check searched each walk's list of words: ~n^2/2 comparisons on a forward chain, 2 million
    at 2,000 words)."""
    for n in (1000, 4000):
        assert tree_check_ops(shape(n)) <= 4 * n, (shape.__name__, n)


def test_tree_check_still_finds_a_cycle_at_the_end_of_a_long_chain_and_names_its_line(tmp_path):
    n = 5000
    heads = forward_chain(n)
    heads[-1] = n - 1  # the last word points back at the one before it: a cycle of two
    path = tmp_path / "cycle.conllu"
    path.write_text("".join(UD_WORD.format(i + 1, f"w{i}", h) for i, h in enumerate(heads)))
    with pytest.raises(ConversionError, match=rf"HEADs form a cycle \({n - 1} -> {n} -> {n - 1}\)") as info:
        conllu_to_docs(path)
    assert str(info.value).startswith(f"{path}:1: ")  # found walking from word 1, as before
    ok = tmp_path / "chain.conllu"
    ok.write_text("".join(UD_WORD.format(i + 1, f"w{i}", h) for i, h in enumerate(forward_chain(n))))
    (doc,) = conllu_to_docs(ok, n_sents_per_doc=0)
    assert [t.head.i for t in doc][:3] == [1, 2, 3] and doc[n - 1].head.i == n - 1


@pytest.mark.parametrize("head", ["\u00b2", "\u0661", "\u2460", "1\u00b2"])  # superscript two, Arabic-Indic one, circled one
def test_a_conllu_head_of_non_ascii_digits_is_a_one_line_error(tmp_path, head):
    path = tmp_path / "bad.conllu"
    path.write_text(UD_WORD.format(1, "Hi", 0) + UD_WORD.format(2, "yo", head), encoding="utf-8")
    with pytest.raises(ConversionError) as info:
        conllu_to_docs(path)
    assert str(info.value) == (f"{path}:2: HEAD {head!r} is not a word ID. "
                               "Use the head's ID in digits 0-9, 0 for the root, or _ .")


def test_a_tsv_column_given_in_non_ascii_digits_is_a_name_not_an_index(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("hello\tpos\nbye\tneg\n")
    with pytest.raises(ConversionError, match=r"t.tsv:1: no column named '\u00b2' for text_column"):
        tsv_to_docs(path, text_column="\u00b2")


def test_converter_messages_do_not_assume_a_checkout_beside_shared_data():
    for module in ("spacy_electra/convert.py", "spacy_electra/qa/convert.py"):
        assert "shared/data" not in (Path(__file__).resolve().parents[1] / module).read_text()


# -- SQuAD -------------------------------------------------------------------------------------
def squad(context="Paris is in France.", qa: Optional[dict] = None, **paragraph) -> dict:
    qa = {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]} if qa is None else qa
    return {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": [qa], **paragraph}]}]}


QA = {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}
WHERE = "data[0].paragraphs[0]"
SCHEMA = "A SQuAD v1.1/v2.0 file is {"

BAD_SQUAD = [
    ("deep", '{"data": ' + "[" * 100_000 + "]" * 100_000 + "}", None,
     "is nested deeper than Python's json reads"),
    ("data of strings", {"data": ["x"]}, None, "data[0]: is a string ('x'), not an object. " + SCHEMA),
    ("no paragraphs", {"data": [{"title": "T"}]}, None, 'data[0]: "paragraphs" is missing. ' + SCHEMA),
    ("int context", squad(context=42), None, f"{WHERE}.context: is an integer, not a string. " + SCHEMA),
    ("no qas", {"data": [{"paragraphs": [{"context": "c"}]}]}, None, f'{WHERE}: "qas" is missing.'),
    ("missing question", squad(qa={"id": "q1", "answers": []}), None, f'{WHERE}.qas[0]: "question" is missing. ' + SCHEMA),
    ("null question", squad(qa={**QA, "question": None}), None, f"{WHERE}.qas[0].question: is null, not a string."),
    ("string answer_start", squad(qa={**QA, "answers": [{"text": "France", "answer_start": "12"}]}), None,
     f"{WHERE}.qas[0].answers[0].answer_start: is a string ('12'), not an integer. " + SCHEMA),
    ("bool answer_start", squad(qa={**QA, "answers": [{"text": "France", "answer_start": True}]}), None,
     f"{WHERE}.qas[0].answers[0].answer_start: is true or false, not an integer."),
    ("answers as a dict", squad(qa={**QA, "answers": {"text": "France", "answer_start": 12}}), None,
     f"{WHERE}.qas[0].answers: is an object, not a list. " + SCHEMA),
    ("answer without text", squad(qa={**QA, "answers": [{"answer_start": 12}]}), None,
     f'{WHERE}.qas[0].answers[0]: "text" is missing.'),
    ("string is_impossible", squad(qa={**QA, "is_impossible": "false"}), None,
     f"{WHERE}.qas[0].is_impossible: is a string ('false'), not true or false."),
    ("list id", squad(qa={**QA, "id": ["q"]}), None, f"{WHERE}.qas[0].id: is a list, not a string or an integer."),
    ("surrogate in context", '{"data": [{"paragraphs": [{"context": "Paris \\ud800", "qas": []}]}]}', None,
     f"{WHERE}.context: has a lone surrogate \\ud800 at character 6: not Unicode text. Remove it, or give the surrogate its pair."),
    ("surrogate in question", squad(qa={**QA, "question": "Where\udc00?"}), None,
     f"{WHERE}.qas[0].question: has a lone surrogate \\udc00 at character 5"),
    ("surrogate in answer", squad(qa={**QA, "answers": [{"text": "\ud83d", "answer_start": 0}]}), None,
     f"{WHERE}.qas[0].answers[0].text: has a lone surrogate \\ud83d at character 0"),
    ("context over max_length", squad(context="word " * 200_000 + "!"), None,
     f"{WHERE}.context: has 1,000,001 characters, over the tokenizer's max_length 1,000,000. Split the paragraph"),
    ("long run in context", squad(context="Paris " + "[" * 5000), None,
     f"{WHERE}.context: has 5,000 characters without whitespace at character 6, over the limit of 1,000"),
    ("huge number", '{"data": [], "n": ' + "9" * 5000 + "}", None, "is not JSON Python can read (Exceeds the limit (4300 digits)"),
    ("syntax error", '{"data": [\n  {"paragraphs": [}\n]}', 2, "is not valid JSON (Expecting value at column 19)."),
]


def write_squad(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


@pytest.mark.parametrize("name,content,line,message", BAD_SQUAD, ids=[c[0] for c in BAD_SQUAD])
def test_a_malformed_squad_file_is_one_error_naming_the_file_where_and_the_fix(tmp_path, name, content, line, message):
    path = write_squad(tmp_path / "bad.json", content)
    with pytest.raises(ConversionError) as info:
        squad_to_docs(path)
    text = str(info.value)
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert text.startswith(where + message), text
    assert "\n" not in text and len(text) < 400


def test_the_command_line_reports_a_bad_squad_file_in_one_line_and_writes_nothing(tmp_path):
    from spacy_electra.cli import app

    path = write_squad(tmp_path / "bad.json", squad(qa={**QA, "answers": {"text": "France"}}))
    result = CliRunner().invoke(app, ["convert", "squad", str(path), str(tmp_path / "out.spacy")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith(f"Error: {path}: {WHERE}.qas[0].answers: is an object, not a list.")
    assert not (tmp_path / "out.spacy").exists()


def test_a_long_context_converts_with_its_answers_and_ids_of_either_type(tmp_path):
    """200,000 characters of words, the answer at the end with a wrong offset (one scan to find it)."""
    context = "the cafe is in paris . " * 8_695 + "Rome is the answer."
    qas = [{"id": 7, "question": "Which city?", "answers": [{"text": "Rome", "answer_start": 0}]},
           {"id": "b", "question": "Never?", "is_impossible": True, "answers": []},
           {"question": "No id?", "answers": [{"text": "answer", "answer_start": len(context) - 7}]}]
    path = write_squad(tmp_path / "long.json", {"data": [{"paragraphs": [{"context": context, "qas": qas}]}]})
    report = convert_squad(path, tmp_path / "long.spacy")
    assert (report.contexts, report.questions, report.answers, report.relocated, report.impossible) == (1, 3, 2, 1, 1)
    (doc,), _ = squad_to_docs(path)
    first, second, third = doc._.qa_gold
    assert first["id"] == "7" and doc[first["answers"][0]["start"]:first["answers"][0]["end"]].text == "Rome"
    assert second["impossible"] and third["id"] == "" and third["answers"][0]["text"] == "answer"
