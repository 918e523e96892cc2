"""Converters to .spacy: small fixtures written here, spaCy's own converters as an oracle, and one
check per real dev file in ../shared/data (skipped when that folder is absent)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest
from spacy.tokens import Doc, DocBin
from spacy.training.converters import conll_ner_to_docs as spacy_conll_ner_to_docs
from spacy.training.converters import conllu_to_docs as spacy_conllu_to_docs
from spacy.vocab import Vocab

from spacy_electra.convert import (
    ConversionError,
    conll_ner_to_docs,
    conllu_to_docs,
    docs_to_docbin,
    tsv_to_docs,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(tmp_path: Path, name: str, text: str, newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf8"))
    return path


def ents(doc: Doc) -> List[Tuple[str, str]]:
    return [(e.text, e.label_) for e in doc.ents]


# ----------------------------------------------------------------------------------------------
# CoNLL NER

CONLL_2003 = """\
-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""

# IOB1: I- starts an entity unless it continues one of its type; B- only splits same-type runs.
CONLL_IOB1 = """\
Wolff NNP B-NP I-PER
, , O O
Hans NNP B-NP I-PER
Peter NNP I-NP I-PER
Schmidt NNP I-NP B-PER
in IN B-PP O
New NNP B-NP I-LOC
York NNP I-NP I-LOC
Times NNP I-NP I-ORG

Smith NNP B-NP I-PER

Jones NNP B-NP I-PER
met VBD B-VP O
"""

WNUT = "Stabilized\tO\napproach\tO \n\nPaul\tB-person\n\t\nLa\tB-location\nSagrada\tI-location\n\n" + "".join(
    f"w{i}\tO\n\n" for i in range(3)
)


@pytest.mark.parametrize(
    "tags,expected",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [(0, 2, "PER"), (3, 4, "LOC")]),
        (["B-PER", "B-PER", "I-PER"], [(0, 1, "PER"), (1, 3, "PER")]),
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),
        (["I-ORG", "I-LOC", "I-LOC"], [(0, 1, "ORG"), (1, 3, "LOC")]),
        (["B-PER", "I-LOC", "O", "O"], [(0, 1, "PER"), (1, 2, "LOC")]),
        (["B-creative-work", "I-creative-work"], [(0, 2, "creative-work")]),
        (["O", "O"], []),
    ],
)
def test_bio_and_iob1_tags_give_these_entities(tmp_path, tags, expected):
    words = [f"w{i}" for i in range(len(tags))]
    path = write(tmp_path, "tags.txt", "".join(f"{w} {t}\n" for w, t in zip(words, tags)))
    (doc,) = conll_ner_to_docs(path)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == expected


def test_docs_move_to_the_vocab_of_nlp(tmp_path):
    import spacy

    nlp = spacy.blank("en")
    for docs in (conll_ner_to_docs(write(tmp_path, "a.txt", CONLL_2003), nlp=nlp),
                 conllu_to_docs(write(tmp_path, "ud.conllu", CONLLU), nlp=nlp)):
        assert docs and all(doc.vocab is nlp.vocab for doc in docs)
    assert ents(conll_ner_to_docs(tmp_path / "a.txt", nlp=nlp)[0]) == [("EU", "ORG"), ("German", "MISC"),
                                                                     ("Peter Blackburn", "PER")]


def test_conll2003_groups_by_docstart_and_sets_ents_tags_sents(tmp_path):
    docs = conll_ner_to_docs(write(tmp_path, "a.txt", CONLL_2003), n_sents_per_doc=1)
    assert len(docs) == 2  # -DOCSTART- wins over n_sents_per_doc
    first, second = docs
    assert [s.text for s in first.sents] == ["EU rejects German call .", "Peter Blackburn"]
    assert ents(first) == [("EU", "ORG"), ("German", "MISC"), ("Peter Blackburn", "PER")]
    assert [t.tag_ for t in first] == ["NNP", "VBZ", "JJ", "NN", ".", "NNP", "NNP"]
    assert ents(second) == [("BRUSSELS", "LOC")] and len(list(second.sents)) == 1


def test_conll_iob1_entities_and_sentence_boundaries(tmp_path):
    (doc,) = conll_ner_to_docs(write(tmp_path, "iob1.txt", CONLL_IOB1))
    assert ents(doc) == [
        ("Wolff", "PER"), ("Hans Peter", "PER"), ("Schmidt", "PER"), ("New York", "LOC"),
        ("Times", "ORG"), ("Smith", "PER"), ("Jones", "PER"),  # no entity crosses a sentence end
    ]
    assert len(list(doc.sents)) == 3


def test_wnut_tabs_lone_tab_separator_and_grouping_by_n(tmp_path):
    docs = conll_ner_to_docs(write(tmp_path, "wnut.conll", WNUT), n_sents_per_doc=2)
    assert [len(list(d.sents)) for d in docs] == [2, 2, 2]
    assert ents(docs[0]) == [("Paul", "person")] and ents(docs[1]) == [("La Sagrada", "location")]
    assert all(t.tag_ == "" for d in docs for t in d)  # two columns: no POS
    assert len(conll_ner_to_docs(tmp_path / "wnut.conll", n_sents_per_doc=0)) == 1


@pytest.mark.parametrize("text", [CONLL_2003, CONLL_IOB1, WNUT])
def test_conll_ner_matches_spacy_convert(tmp_path, text):
    """Same words, tags, sentences and entities as `spacy convert -c ner` (which only knows the
    `-DOCSTART- -X- O O` delimiter, so the fixture is given to it in that spelling)."""
    ours = conll_ner_to_docs(write(tmp_path, "x.txt", text), n_sents_per_doc=1)
    spacy_text = text.replace("-DOCSTART- -X- -X- O", "-DOCSTART- -X- O O").replace("\t\n", "\n")
    theirs = list(spacy_conll_ner_to_docs(spacy_text, n_sents=1, no_print=True))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert [t.text for t in a] == [t.text for t in b]
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        assert [t.is_sent_start for t in a] == [t.is_sent_start for t in b]
        if "NNP" in text:
            assert [t.tag_ for t in a] == [t.tag_ for t in b]


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ("EU B-ORG\nrejects\n", 2, "expected `token ... NER-tag`"),
        ("EU NNP B-ORG\nrejects VBZ B-VP O\n", 2, "4 columns, but line 1 has 3"),
        ("EU NNP\nrejects VBZ\n", 1, "'NNP' in the last column is not a BIO/IOB1 tag"),
        ("EU U-ORG\n", 1, "is not a BIO/IOB1 tag"),
        ("EU B-\n", 1, "is not a BIO/IOB1 tag"),
    ],
)
def test_conll_ner_malformed_lines_name_file_line_and_fix(tmp_path, text, line, fragment):
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(ConversionError) as info:
        conll_ner_to_docs(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ") and fragment in message
    assert info.value.line_no == line


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ("Paul\tB-person\n\u00a0\tI-person\n", 2, "an entity on a whitespace token"),
        ("Paul\tB-person\n \tO\n", 2, "a column with whitespace in it"),
        ("La Sagrada\tB-location\n", 1, "a column with whitespace in it"),
    ],
)
def test_conll_ner_whitespace_tokens_are_refused(tmp_path, text, line, fragment):
    """spaCy's converter splits columns on whitespace: such a token would shift every column."""
    path = write(tmp_path, "ws.conll", text)
    with pytest.raises(ConversionError, match=fragment) as info:
        conll_ner_to_docs(path)
    assert str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(
    "convert,name,text",
    [
        (conll_ner_to_docs, "empty.txt", ""),
        (conll_ner_to_docs, "docstart_only.txt", "-DOCSTART- -X- -X- O\n\n"),
        (conllu_to_docs, "empty.conllu", "\n\n"),
        (conllu_to_docs, "comments.conllu", "# newdoc id = 1\n# sent_id = 1\n\n"),
        (tsv_to_docs, "empty.tsv", "\n"),
        (tsv_to_docs, "header.tsv", "label\tsentence\n"),
    ],
)
def test_empty_inputs_are_errors(tmp_path, convert, name, text):
    path = write(tmp_path, name, text)
    with pytest.raises(ConversionError, match="converts to nothing"):
        convert(path)


@pytest.mark.parametrize("convert", [conll_ner_to_docs, conllu_to_docs, tsv_to_docs])
def test_non_utf8_input_names_the_line(tmp_path, convert):
    lines = {conll_ner_to_docs: "EU B-ORG\ncaf\xe9 O\n", conllu_to_docs: UD_WORD.format(1, "caf\xe9", 0),
             tsv_to_docs: "good\t1\ncaf\xe9\t0\n"}[convert]
    if convert is conllu_to_docs:
        lines = UD_WORD.format(1, "a", 0) + "\n" + lines
    path = tmp_path / "latin1.txt"
    path.write_bytes(lines.encode("latin1"))
    line = 2 if convert is not conllu_to_docs else 3
    with pytest.raises(ConversionError, match=r"is not UTF-8 text \(byte 0xe9") as info:
        convert(path)
    assert str(info.value).startswith(f"{path}:{line}: ")


# ----------------------------------------------------------------------------------------------
# CoNLL-U

UD_WORD = "{0}\t{1}\t{1}\tX\tX\t_\t{2}\tdep\t_\t_\n"

CONLLU = """\
# newdoc id = d1
# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\tCase=Nom|Number=Sing|Person=1|PronType=Prs\t4\tnsubj\t4:nsubj\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\tMood=Ind|Tense=Pres|VerbForm=Fin\t4\taux\t4:aux\t_
3\tn't\tnot\tPART\tRB\tPolarity=Neg\t4\tadvmod\t4:advmod\t_
4\tknow\tknow\tVERB\tVB\tVerbForm=Inf\t0\troot\t0:root\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t4:punct\t_

# sent_id = 2
# text = Sue's, too.
1-2\tSue's\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No
1\tSue\tSue\tPROPN\tNNP\tNumber=Sing\t0\troot\t0:root\t_
2\t's\t's\tPART\tPOS\t_\t1\tcase\t1:case\t_
2.1\tis\tbe\tAUX\tVBZ\t_\t_\t_\t1:cop\tCopyOf=-1
3\t,\t,\tPUNCT\t,\t_\t1\tpunct\t1:punct\t_
4\ttoo\ttoo\tADV\t_\t_\t1\tadvmod\t1:advmod\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t1\tpunct\t1:punct\t_

# newdoc id = d2
# sent_id = 3
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t0:root\t_
"""


def test_conllu_words_spaces_heads_and_multiword_tokens(tmp_path):
    docs = conllu_to_docs(write(tmp_path, "ud.conllu", CONLLU))
    assert len(docs) == 2  # `# newdoc` starts a doc
    doc = docs[0]
    assert doc.text == "I don't know. Sue's, too. "
    assert [t.text for t in doc] == ["I", "do", "n't", "know", ".", "Sue", "'s", ",", "too", "."]
    assert [s.text for s in doc.sents] == ["I don't know.", "Sue's, too."]
    assert [t.head.i for t in doc] == [3, 3, 3, 3, 3, 5, 5, 5, 5, 5]
    assert [t.dep_ for t in doc][3:6] == ["ROOT", "punct", "ROOT"]
    know = doc[3]
    assert (know.tag_, know.pos_, know.lemma_, str(know.morph)) == ("VB", "VERB", "know", "VerbForm=Inf")
    assert doc[8].tag_ == "ADV"  # XPOS `_`: UPOS stands in, as in spaCy's converter
    assert str(doc[4].morph) == ""
    assert [t.text for t in docs[1]] == ["Hi"]


def test_conllu_n_sents_per_doc_caps_docs_within_a_ud_document(tmp_path):
    docs = conllu_to_docs(write(tmp_path, "ud.conllu", CONLLU), n_sents_per_doc=1)
    assert [len(list(d.sents)) for d in docs] == [1, 1, 1]


def test_conllu_matches_spacy_convert(tmp_path):
    ours = conllu_to_docs(write(tmp_path, "ud.conllu", CONLLU), n_sents_per_doc=1)
    theirs = list(spacy_conllu_to_docs(CONLLU, n_sents=1, no_print=True))
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        for attr in ("text", "whitespace_", "tag_", "pos_", "lemma_", "dep_"):
            assert [getattr(t, attr) for t in a] == [getattr(t, attr) for t in b], attr
        assert [str(t.morph) for t in a] == [str(t.morph) for t in b]
        assert [t.head.i for t in a] == [t.head.i for t in b]


def test_conllu_whole_documents_with_n_sents_zero(tmp_path):
    docs = conllu_to_docs(write(tmp_path, "ud.conllu", CONLLU), n_sents_per_doc=0)
    assert [len(list(d.sents)) for d in docs] == [2, 1]


def test_conllu_without_heads_keeps_sentence_starts(tmp_path):
    text = "1\tHi\thi\tINTJ\tUH\t_\t_\t_\t_\t_\n\n1\tYo\tyo\tINTJ\tUH\t_\t_\t_\t_\t_\n"
    (doc,) = conllu_to_docs(write(tmp_path, "pos.conllu", text))
    assert [s.text for s in doc.sents] == ["Hi", "Yo"] and not doc.has_annotation("DEP")


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ("1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\n", 1, "9 tab-separated columns"),
        ("1 Hi hi INTJ UH _ 0 root _ _\n", 1, "1 tab-separated columns"),
        ("1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n3\tyo\tyo\tINTJ\tUH\t_\t1\tdep\t_\t_\n", 2, "word ID '3'"),
        ("1\tHi\thi\tINTJ\tUH\t_\tx\troot\t_\t_\n", 1, "HEAD 'x'"),
        ("# c\n1\tHi\thi\tINTJ\tUH\t_\t7\troot\t_\t_\n", 2, "HEAD 7, but the sentence has only 1 words"),
        ("1\tHi\thi\tINTJ\tUH\t_\t1\troot\t_\t_\n", 1, "word 1 is its own HEAD"),
        (UD_WORD.format(1, "a", 2) + UD_WORD.format(2, "b", 3) + UD_WORD.format(3, "c", 1), 1,
         r"HEADs form a cycle \(1 -> 2 -> 3 -> 1\)"),
        (UD_WORD.format(1, "a", 0) + UD_WORD.format(2, "b", 3) + UD_WORD.format(3, "c", 2), 2,
         r"HEADs form a cycle \(2 -> 3 -> 2\)"),
        ("1\tHi\thi\tINTJ\tUH\tNumber\t0\troot\t_\t_\n", 1, "FEATS 'Number': 'Number' is not a Feature=Value"),
        ("1\tHi\thi\tINTJ\tUH\tCase=Nom|=x\t0\troot\t_\t_\n", 1, "'=x' is not a Feature=Value pair"),
        ("1\t\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n", 1, "FORM is empty"),
        ("1\tHi\thi\tINTJ\tUH\t_\t-1\troot\t_\t_\n", 1, "HEAD '-1' is not a word ID"),
        ("2-1\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n" + UD_WORD.format(1, "do", 0), 1, "multiword token range '2-1'"),
        ("1-1\tdo\t_\t_\t_\t_\t_\t_\t_\t_\n" + UD_WORD.format(1, "do", 0), 1, "multiword token range '1-1'"),
        ("1-x\tdo\t_\t_\t_\t_\t_\t_\t_\t_\n", 1, "multiword token range '1-x'"),
        (UD_WORD.format(1, "a", 0) + "2-3\tbc\t_\t_\t_\t_\t_\t_\t_\t_\n" + UD_WORD.format(2, "b", 1), 3,
         "a multiword token runs to word 3, but the sentence ends at word 2"),
    ],
)
def test_conllu_malformed_lines_are_errors_with_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path, "bad.conllu", text)
    with pytest.raises(ConversionError, match=fragment) as info:
        conllu_to_docs(path)
    assert str(info.value).startswith(f"{path}:{line}: ")


# ----------------------------------------------------------------------------------------------
# TSV text classification

SST2 = "label\tsentence\n0\thide new secretions from the parental units \n1\tthe greatest musicians\n"
AGNEWS = "Wall St. Bears Claw Back.\tBusiness\nFlyers win again!\tSports\n\nNew iPod.\tSci/Tech\n"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("text_name", ["sentence", "content"])
def test_tsv_with_header_finds_columns_by_name(tmp_path, newline, text_name):
    path = write(tmp_path, "sst2.tsv", SST2.replace("sentence", text_name, 1), newline)
    docs = tsv_to_docs(path)
    assert [d.text for d in docs] == ["hide new secretions from the parental units", "the greatest musicians"]
    assert [d.cats for d in docs] == [{"0": 1.0, "1": 0.0}, {"0": 0.0, "1": 1.0}]
    assert [t.text for t in docs[1]] == ["the", "greatest", "musicians"]


def test_tsv_without_header_label_map_and_fixed_label_set(tmp_path):
    path = write(tmp_path, "ag.tsv", AGNEWS)
    docs = tsv_to_docs(path)  # no header: text 0, label 1; blank lines skipped
    assert [t.text for t in docs[0]] == ["Wall", "St.", "Bears", "Claw", "Back", "."]
    assert list(docs[0].cats) == ["Business", "Sci/Tech", "Sports"] and docs[2].cats["Sci/Tech"] == 1.0
    labels = ["Business", "Sci/Tech", "Sports", "World"]
    assert list(tsv_to_docs(path, labels=labels)[0].cats) == labels
    sst = tsv_to_docs(write(tmp_path, "sst2.tsv", SST2), label_map={"0": "negative", "1": "positive"})
    assert sst[1].cats == {"negative": 0.0, "positive": 1.0}


def test_tsv_explicit_columns_header_and_multilabel(tmp_path):
    path = write(tmp_path, "multi.tsv", "a,b\tsome text\n\tno labels\nb\tother\n")
    docs = tsv_to_docs(path, text_column=1, label_column=0, header=False, multilabel=True)
    assert [d.cats for d in docs] == [{"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 1.0}]
    forced = tsv_to_docs(write(tmp_path, "h.tsv", "x\ty\nhello\tpos\n"), header=True, text_column="x", label_column="y")
    assert [d.text for d in forced] == ["hello"]


@pytest.mark.parametrize(
    "text,kwargs,line,fragment",
    [
        ("label\tsentence\n0\tgood\textra\n", {}, 2, "3 tab-separated fields where the first row has 2"),
        ("label\tsentence\n2\tgood\n", {"labels": ["0", "1"]}, 2, "label(s) ['2'] are not in labels"),
        ("label\tsentence\n2\tgood\n", {"label_map": {"0": "neg"}}, 2, "label '2' is not in label_map"),
        ("label\tsentence\n0\t \n", {}, 2, "empty text"),
        ("label\tsentence\n\tgood\n", {}, 2, "empty label"),
        ("label\tsentence\n0\tgood\n", {"text_column": "review"}, 1, "no column named 'review'"),
        ("good\t0\n", {"label_column": 5}, 1, "label_column=5 but rows have 2 columns"),
    ],
)
def test_tsv_malformed_input(tmp_path, text, kwargs, line, fragment):
    path = write(tmp_path, "bad.tsv", text)
    with pytest.raises(ConversionError) as info:
        tsv_to_docs(path, **kwargs)
    assert str(info.value).startswith(f"{path}:{line}: ") and fragment in str(info.value)


# ----------------------------------------------------------------------------------------------
# DocBin and command line


def test_docbin_round_trip_keeps_annotation(tmp_path):
    originals = (
        conll_ner_to_docs(write(tmp_path, "a.txt", CONLL_2003))
        + conllu_to_docs(write(tmp_path, "ud.conllu", CONLLU))
        + tsv_to_docs(write(tmp_path, "sst2.tsv", SST2))
    )
    out = tmp_path / "nested" / "all.spacy"
    assert docs_to_docbin(originals, out) == len(originals)
    loaded = list(DocBin().from_disk(out).get_docs(Vocab()))
    for a, b in zip(originals, loaded):
        assert a.to_json() == b.to_json()  # text, tokens, tags, morph, heads, deps, ents, sents, cats


def test_convert_command_through_typer(tmp_path):
    from typer.testing import CliRunner

    from spacy_electra.cli import app

    runner = CliRunner()
    sst, out = write(tmp_path, "sst2.tsv", SST2), tmp_path / "sst2.spacy"
    result = runner.invoke(app, ["convert", "textcat", str(sst), str(out), "--label-map", "0=neg,1=pos"])
    assert result.exit_code == 0, result.output
    assert "2 rows, labels ['neg', 'pos']" in result.output
    assert next(DocBin().from_disk(out).get_docs(Vocab())).cats == {"neg": 1.0, "pos": 0.0}
    ner = write(tmp_path, "a.txt", CONLL_2003)
    result = runner.invoke(app, ["convert", "ner", str(ner), str(tmp_path / "a.spacy")])
    assert result.exit_code == 0 and "2 docs, 3 sentences, 9 tokens" in result.output
    bad = write(tmp_path, "bad.txt", "EU\n")
    result = runner.invoke(app, ["convert", "ner", str(bad), str(tmp_path / "b.spacy")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {bad}:1:") and result.output.count("\n") == 1
    assert not (tmp_path / "b.spacy").exists()
    result = runner.invoke(app, ["convert", "ner", str(ner), str(tmp_path / "n.spacy"), "--n-sents", "-1"])
    assert result.exit_code == 2 and not (tmp_path / "n.spacy").exists()
    empty = write(tmp_path, "empty.conllu", "# only a comment\n\n")
    result = runner.invoke(app, ["convert", "conllu", str(empty), str(tmp_path / "e.spacy")])
    assert result.exit_code == 1 and "has no word lines" in result.output and not (tmp_path / "e.spacy").exists()


# ----------------------------------------------------------------------------------------------
# Real dev files from ../shared/data (counts from its README and the files themselves)


def data_file(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data folder sits beside the repository as ../shared/data")
    return path


def test_real_conll2003_valid_matches_readme_and_spacy():
    path = data_file("ner/conll2003/valid.txt")
    docs = conll_ner_to_docs(path)
    assert len(docs) == 216  # -DOCSTART- documents
    assert sum(1 for d in docs for _ in d.sents) == 3250
    assert sum(len(d) for d in docs) == 51362
    ours = [(e.text, e.label_) for d in docs for e in d.ents]
    assert len(ours) == 5942
    text = path.read_text(encoding="utf8").replace("-DOCSTART- -X- -X- O", "-DOCSTART- -X- O O")
    theirs = [(e.text, e.label_) for d in spacy_conll_ner_to_docs(text, no_print=True) for e in d.ents]
    assert ours == theirs


def test_real_wnut17_dev():
    docs = conll_ner_to_docs(data_file("ner/wnut17/dev.conll"), n_sents_per_doc=10)
    assert sum(1 for d in docs for _ in d.sents) == 1009 and len(docs) == 101
    assert sum(len(d.ents) for d in docs) == 836
    assert {e.label_ for d in docs for e in d.ents} == {
        "corporation", "creative-work", "group", "location", "person", "product"}


def test_real_ud_english_ewt_dev():
    docs = conllu_to_docs(data_file("pos/ud_english_ewt/en_ewt-ud-dev.conllu"))
    sents = [s for d in docs for s in d.sents]
    assert len(sents) == 2001
    assert sum(len(d) for d in docs) == 25147  # words: multiword ranges and empty nodes left out
    assert sum(t.dep_ == "ROOT" for d in docs for t in d) == 2001
    assert all(d.has_annotation("DEP") and d.has_annotation("TAG") for d in docs)


def test_real_sst2_dev():
    docs = tsv_to_docs(data_file("textcat/sst2/dev.tsv"))  # header `label<TAB>content`
    assert len(docs) == 872
    assert sum(d.cats["1"] for d in docs) == 444 and all(set(d.cats) == {"0", "1"} for d in docs)


def test_real_agnews_train():
    docs = tsv_to_docs(data_file("textcat/agnews/train.tsv"))
    assert len(docs) == 10001  # the README says 10,000 rows; the file holds 10,001
    assert list(docs[0].cats) == ["Business", "Sci/Tech", "Sports", "World"]
