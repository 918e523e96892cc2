"""Hardening of the converters: the CoNLL-U tree check does linear work (counted, not timed), and
digits that ``str.isdigit`` accepts but ``int`` refuses are one-line errors."""
from __future__ import annotations

import random
from pathlib import Path
from typing import List

import pytest

from spacy_electra import convert
from spacy_electra.convert import ConversionError, conllu_to_docs, tsv_to_docs

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
    for module in ("spacy_electra/convert.py",):
        assert "shared/data" not in (Path(__file__).resolve().parents[1] / module).read_text()
