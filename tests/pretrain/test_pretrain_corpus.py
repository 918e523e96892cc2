"""Corpus reading (three formats), packing within documents, memory-mapped streaming, vocab."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer import Typer
from typer.testing import CliRunner

from spacy_electra.checkpoint import read_vocabulary
from spacy_electra.pieces import WordPieceEncoder
from spacy_electra.pretrain.commands import vocab_command
from spacy_electra.pretrain.corpus import (
    CorpusError, PackedCorpus, build_corpus, detect_format, iter_documents, open_or_build, pack_document,
)

from ..conftest import write_vocab

CLS, SEP, PAD = 2, 3, 0
# Each document is written with the words of one group, so a packed row shows its source.
GROUPS = [["the", "a", "of"], ["new", "york", "city"], ["london", "paris", "cafe"], ["he", "she", "it"]]


def write_docs(path: Path, fmt: str, n_docs: int = 24, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n_docs):
        words = GROUPS[d % len(GROUPS)]
        docs.append([" ".join(rng.choice(words, size=rng.integers(2, 30))) for _ in range(rng.integers(1, 6))])
    with open(path, "w", encoding="utf8") as f:
        for d, doc in enumerate(docs):
            if fmt == "wiki":
                f.write(f'<doc id="{d}" url="?curid={d}" title="Title {d}">\nTitle {d}\n\n' + "\n".join(doc) + "\n</doc>\n")
            elif fmt == "blank":
                f.write("\n".join(doc) + "\n\n")
            else:
                f.write(" ".join(doc) + "\n")
    return docs


@pytest.mark.parametrize("fmt", ["wiki", "blank", "lines"])
def test_three_input_formats_are_read_and_detected(tmp_path, fmt):
    docs = write_docs(tmp_path / "corpus.txt", fmt)
    assert detect_format(tmp_path / "corpus.txt") == fmt
    read = list(iter_documents(tmp_path / "corpus.txt"))
    expected = [[" ".join(doc)] for doc in docs] if fmt == "lines" else docs
    assert read == expected  # wiki titles are dropped


def test_packing_stays_within_documents_and_keeps_every_piece():
    rng = np.random.default_rng(0)
    docs = [[rng.integers(100 * (d + 1), 100 * (d + 1) + 50, size=rng.integers(1, 70)) for _ in range(rng.integers(1, 8))]
            for d in range(40)]
    rows = []
    for doc in docs:
        packed = pack_document(doc, rng, seq_length=32, cls_id=CLS, sep_id=SEP)
        for row in packed:
            assert len(row) <= 32 and row[0] == CLS and row[-1] == SEP
            assert 1 <= int((row == SEP).sum()) <= 2
            body = row[(row != CLS) & (row != SEP)]
            assert len(set((body // 100).tolist())) == 1  # one source document
        rows += packed
        got = Counter(np.concatenate([r[(r != CLS) & (r != SEP)] for r in packed]).tolist())
        assert got == Counter(np.concatenate(doc).tolist())  # nothing lost, nothing duplicated
    lengths = np.array([len(r) for r in rows])
    assert (lengths == 32).mean() > 0.5  # long documents fill whole rows
    two = [r for r in rows if (r == SEP).sum() == 2]
    assert two  # A/B pairs are produced at segment boundaries


def test_build_corpus_memmaps_and_streams_deterministically(tmp_path):
    write_vocab(tmp_path / "vocab")
    write_docs(tmp_path / "a.txt", "wiki", 30)
    write_docs(tmp_path / "b.txt", "blank", 30, seed=1)
    corpus = build_corpus([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "vocab", tmp_path / "packed",
                          seq_length=24, workers=1)
    assert isinstance(corpus.rows, np.memmap) and corpus.rows.dtype == np.uint16
    assert (tmp_path / "packed" / "ids.bin").stat().st_size == len(corpus) * 24 * 2
    encoder = read_vocabulary(tmp_path / "vocab")
    group_of = {int(encoder.encode_texts([w])[0][0]): g for g, words in enumerate(GROUPS) for w in words}
    for row in np.asarray(corpus.rows):
        body = row[(row != CLS) & (row != SEP) & (row != PAD)]
        assert len({group_of[int(t)] for t in body}) == 1
    again = PackedCorpus(tmp_path / "packed")
    n = len(again)
    stream = again.batch(0, 2 * n + 3, seed=7)
    first, second = stream[:n], stream[n : 2 * n]
    rows = np.asarray(corpus.rows, dtype=np.int64)
    # each epoch is a permutation of all rows, a different one per epoch, the same per seed
    assert sorted(map(tuple, first)) == sorted(map(tuple, rows))
    assert sorted(map(tuple, second)) == sorted(map(tuple, rows))
    assert not np.array_equal(first, second)
    assert np.array_equal(again.batch(n - 2, 5, seed=7), stream[n - 2 : n + 3])


def test_joined_documents_fill_rows_and_keep_every_piece(tmp_path):
    """join_documents: one-sentence documents share rows (far fewer, fuller rows, the same ids);
    a cache built one way is refused for the other."""
    write_vocab(tmp_path / "vocab")
    with open(tmp_path / "short.txt", "w", encoding="utf8") as f:
        for d in range(300):
            f.write(" ".join(GROUPS[d % len(GROUPS)][: 1 + d % 3]) + "\n")  # one doc per line, 1-3 words
    kwargs = dict(seq_length=24, workers=1)
    alone = build_corpus([tmp_path / "short.txt"], tmp_path / "vocab", tmp_path / "alone", **kwargs)
    joined = build_corpus([tmp_path / "short.txt"], tmp_path / "vocab", tmp_path / "joined", join_documents=True, **kwargs)
    assert len(alone) == 300 and len(joined) < 300 / 4

    def body(rows):
        rows = np.asarray(rows)
        return Counter(rows[(rows != CLS) & (rows != SEP) & (rows != PAD)].tolist())

    assert body(joined.rows) == body(alone.rows)  # nothing lost, nothing duplicated
    fill = (np.asarray(joined.rows) != PAD).mean()
    assert fill > 0.8, fill  # measured 0.95; one document per row: 0.17
    assert joined.meta["join_documents"] is True and joined.meta["n_documents"] == 300
    with pytest.raises(CorpusError, match="join_documents false, and this run asks for true"):
        open_or_build(tmp_path / "alone", [], tmp_path / "vocab", join_documents=True, **kwargs)
    assert len(open_or_build(tmp_path / "joined", [], tmp_path / "vocab", join_documents=True, **kwargs)) == len(joined)


def test_parallel_build_equals_serial(tmp_path):
    write_vocab(tmp_path / "vocab")
    write_docs(tmp_path / "c.txt", "blank", 600)
    one = build_corpus([tmp_path / "c.txt"], tmp_path / "vocab", tmp_path / "p1", seq_length=24, workers=1)
    two = build_corpus([tmp_path / "c.txt"], tmp_path / "vocab", tmp_path / "p2", seq_length=24, workers=2)
    assert np.array_equal(np.asarray(one.rows), np.asarray(two.rows))


def test_vocab_command_trains_a_vocab_the_encoder_loads(tmp_path):
    write_docs(tmp_path / "text.txt", "blank", 200)
    app = Typer()
    app.command("vocab")(vocab_command)
    app.command("unused")(lambda: None)  # keep typer in multi-command mode
    result = CliRunner().invoke(app, ["vocab", str(tmp_path / "text.txt"), "--output", str(tmp_path / "v"),
                                      "--vocab-size", "120", "--min-frequency", "1"])
    assert result.exit_code == 0, result.output
    encoder = read_vocabulary(tmp_path / "v")
    assert encoder.vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert encoder.lowercase and encoder.vocab_size <= 120
    ids = encoder.encode_texts(["New York city"])[0]
    assert encoder.unk_id not in ids.tolist()
    assert [encoder.vocab[i] for i in ids] == ["new", "york", "city"]
    cased = CliRunner().invoke(app, ["vocab", str(tmp_path / "text.txt"), "--output", str(tmp_path / "c"),
                                     "--vocab-size", "120", "--cased"])
    assert cased.exit_code == 0, cased.output
    assert not read_vocabulary(tmp_path / "c").lowercase


def test_a_spacy_file_gives_its_docs_texts(tmp_path):
    """Task-adaptive pretraining reads a task's .spacy training data: the text of every doc,
    one document each, annotations ignored; a damaged file is one CorpusError line."""
    import spacy
    from spacy.tokens import DocBin

    from spacy_electra.pretrain.corpus import CorpusError

    nlp = spacy.blank("en")
    texts = ["A fine film .", "Paris is in France .\nSo is Lyon .", "   "]
    DocBin(docs=[nlp(t) for t in texts]).to_disk(tmp_path / "train.spacy")
    assert detect_format(tmp_path / "train.spacy") == "spacy"
    assert list(iter_documents(tmp_path / "train.spacy")) == [["A fine film ."], ["Paris is in France .", "So is Lyon ."]]
    (tmp_path / "bad.spacy").write_bytes(b"\x92\x00 not msgpack")
    with pytest.raises(CorpusError, match="bad.spacy is not a readable .spacy file"):
        list(iter_documents(tmp_path / "bad.spacy"))
