"""Hardening of ``spacy-electra annotate`` against hostile input: a line that cannot be read,
stored or tokenized in reasonable time becomes a reject (so a rerun never stops at it again), and
inputs or output folders that are not what they seem are refused in one line."""
import json
import os
import signal
from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import DocBin

from spacy_electra.annotate import AnnotateError, AnnotateInterrupted, annotate
from spacy_electra.annotate import io as annotate_io

from .test_annotate import InterruptAfter, invoke, read_records, read_rejects

DEEP = "[" * 100_000 + "]" * 100_000


def deep_meta(levels: int):
    value = {"leaf": 1}
    for _ in range(levels):
        value = {"x": value}
    return value


@pytest.fixture(scope="module")
def blank(tmp_path_factory):
    """A tokenizer-only pipeline: these tests are about the input, not the model."""
    folder = tmp_path_factory.mktemp("blank") / "pipeline"
    spacy.blank("en").to_disk(folder)
    return folder, spacy.load(folder)


# Each hostile line, as bytes, and a fragment of the reason it must be rejected with.
HOSTILE = [
    (b'{"text": "big number", "n": ' + b"7" * 5000 + b"}", "4300 digits"),
    (b'{"text": "deep array", "n": ' + DEEP.encode() + b"}", "nested deeper than 100 levels"),
    (b'{"text": "lone \\ud800 surrogate"}', "lone surrogate \\ud800 at character 5 of field 'text'"),
    (b'{"text": "meta", "source": {"name": "\\udc00x"}}', "lone surrogate \\udc00 at character 0 of field 'source'['name']"),
    (b'{"text": "key", "\\ud83d": 1}', "lone surrogate in the key field '\\ud83d'"),
    (b'{"text": "question", "questions": ["ok?", "\\udfff?"]}', "of field 'questions'[1]"),
    (json.dumps({"text": "nested meta", "m": deep_meta(150)}).encode(), "nested deeper than 100 levels (in field 'm'"),
]


def hostile_corpus(path: Path, copies: int = 1) -> Path:
    """Good lines with every hostile line between them, ``copies`` times over."""
    lines = []
    for copy in range(copies):
        for i, (line, _) in enumerate(HOSTILE):
            lines.append(json.dumps({"text": f"good line {copy} {i}", "n": i}).encode())
            lines.append(line)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("output_format", ["jsonl", "spacy"])
def test_each_hostile_line_is_a_reject_with_its_line_and_reason_and_the_run_goes_on(blank, tmp_path, output_format):
    pipeline, nlp = blank
    path = hostile_corpus(tmp_path / "hostile.jsonl")
    summary = annotate(pipeline, path, tmp_path / "out", output_format=output_format, shard_size=4, nlp=nlp)
    assert (summary.n_records, summary.n_rejects) == (len(HOSTILE), len(HOSTILE))
    rejects = read_rejects(tmp_path / "out")
    assert [r["line"] for r in rejects] == list(range(2, 2 * len(HOSTILE) + 1, 2))
    for reject, (_, fragment) in zip(rejects, HOSTILE):
        assert reject["file"] == "hostile.jsonl" and fragment in reject["reason"], reject
        assert reject["reason"].isascii()
    if output_format == "jsonl":
        assert [r["text"] for r in read_records(tmp_path / "out")] == [f"good line 0 {i}" for i in range(len(HOSTILE))]
    else:
        docs = [d for shard in sorted((tmp_path / "out").glob("docs-*.spacy")) for d in DocBin().from_disk(shard).get_docs(nlp.vocab)]
        assert [d.text for d in docs] == [f"good line 0 {i}" for i in range(len(HOSTILE))]


def test_integers_past_64_bits_are_rejected_for_spacy_shards_only(blank, tmp_path):
    pipeline, nlp = blank
    rows = [{"text": "small", "n": 2**63}, {"text": "big", "n": 2**64}, {"text": "negative", "n": -(2**63) - 1}]
    path = tmp_path / "ints.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    annotate(pipeline, path, tmp_path / "spacy", output_format="spacy", nlp=nlp)
    reasons = [(r["line"], r["reason"]) for r in read_rejects(tmp_path / "spacy")]
    assert reasons == [(2, "integer of 20 digits in field 'n': a .spacy shard (msgpack) stores 64-bit integers only"),
                       (3, "integer of 19 digits in field 'n': a .spacy shard (msgpack) stores 64-bit integers only")]
    annotate(pipeline, path, tmp_path / "jsonl", nlp=nlp)  # JSON holds any integer
    assert [r["meta"]["n"] for r in read_records(tmp_path / "jsonl")] == [2**63, 2**64, -(2**63) - 1]


def test_an_interrupted_run_over_hostile_lines_resumes_to_the_same_output_nothing_lost_or_twice(blank, tmp_path, monkeypatch):
    pipeline, nlp = blank
    path = hostile_corpus(tmp_path / "hostile.jsonl", copies=3)
    n_lines = 2 * 3 * len(HOSTILE)
    annotate(pipeline, path, tmp_path / "reference", shard_size=5, nlp=nlp)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        InterruptAfter(patch, 9)  # in the middle of the run, with hostile lines on both sides
        with pytest.raises(AnnotateInterrupted):
            annotate(pipeline, path, out, shard_size=5, nlp=nlp)
    done = json.loads((out / "manifest.json").read_text())["shards"]
    assert 0 < len(done) < n_lines // 5
    summary = annotate(pipeline, path, out, shard_size=5, nlp=nlp)
    assert summary.n_shards_resumed == len(done)
    records, rejects = read_records(out), read_rejects(out)
    assert records == read_records(tmp_path / "reference") and rejects == read_rejects(tmp_path / "reference")
    lines = sorted([int(r["id"].rsplit(":", 1)[1]) for r in records] + [r["line"] for r in rejects])
    assert lines == list(range(1, n_lines + 1))  # every line once: as a record or as a reject
    assert (summary.n_records, summary.n_rejects) == (n_lines // 2, n_lines // 2)


@Language.component("hardening2_unwritable")
def unwritable(doc):
    """Leaves something in the doc that its shard cannot hold, for docs whose text says so."""
    if "msgpack" in doc.text:
        doc.user_data["counter"] = 2**70
    if "utf8" in doc.text:
        doc.cats = {"\ud800": 1.0}
    return doc


@pytest.mark.parametrize("output_format,word", [("spacy", "msgpack"), ("jsonl", "utf8")])
def test_a_record_that_does_not_serialise_is_rejected_when_its_shard_is_written(tmp_path, output_format, word):
    nlp = spacy.blank("en")
    nlp.add_pipe("hardening2_unwritable")
    nlp.to_disk(tmp_path / "p")
    path = tmp_path / "in.txt"
    path.write_text(f"first\nsecond {word}\n\nfourth\n")
    summary = annotate(tmp_path / "p", path, tmp_path / "out", output_format=output_format, shard_size=10, nlp=nlp)
    assert (summary.n_records, summary.n_rejects) == (2, 2)
    rejects = read_rejects(tmp_path / "out")
    assert [r["line"] for r in rejects] == [2, 3]  # in line order, though found at different times
    assert rejects[0]["reason"].startswith("cannot be stored in a .spacy shard" if output_format == "spacy" else "cannot be written as a JSON record")
    if output_format == "spacy":
        docs = DocBin().from_disk(tmp_path / "out" / "docs-00000.spacy").get_docs(nlp.vocab)
        assert [d.text for d in docs] == ["first", "fourth"]
    else:
        assert [r["text"] for r in read_records(tmp_path / "out")] == ["first", "fourth"]


def test_a_line_that_fails_in_an_unforeseen_way_is_still_only_a_reject(blank, tmp_path, monkeypatch):
    pipeline, nlp = blank
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two", "boom": 1}\n{"text": "three"}\n')
    real = annotate_io.value_problem

    def failing(obj, **kwargs):
        if "boom" in obj:
            raise TypeError("unforeseen")
        return real(obj, **kwargs)

    monkeypatch.setattr(annotate_io, "value_problem", failing)
    summary = annotate(pipeline, path, tmp_path / "out", nlp=nlp)
    assert summary.n_records == 2
    assert read_rejects(tmp_path / "out") == [{"file": "in.jsonl", "line": 2, "reason": "cannot read this line (TypeError: unforeseen)"}]


# -- long runs without whitespace (spaCy's tokenizer is quadratic in them) -----------------------
class SpyTokenizer:
    """Wraps the tokenizer and keeps the length of the longest whitespace-free run it was given."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.longest = 0
        self.texts = 0

    def __call__(self, text):
        self.texts += 1
        self.longest = max(self.longest, max(map(len, text.split()), default=0))
        return self.tokenizer(text)

    def pipe(self, texts, batch_size=1000):
        for text in texts:
            yield self(text)


@pytest.mark.parametrize("char", ["[", "\U0001F600"], ids=["bracket", "emoji"])
def test_the_worst_whitespace_free_runs_are_refused_before_the_tokenizer_sees_them(tmp_path, char):
    nlp = spacy.blank("en")
    nlp.to_disk(tmp_path / "p")
    spy = nlp.tokenizer = SpyTokenizer(nlp.tokenizer)
    limit = annotate_io.MAX_RUN_CHARS
    lines = [
        char * nlp.max_length,  # the longest text annotate accepts, as one run (about a day of tokenizing)
        f"a {char * (limit + 1)} b",  # just over the limit
        f"x {char * limit} y",  # at the limit: annotated
        " ".join([char * 10] * 100),  # many short runs: annotated
    ]
    path = tmp_path / "runs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = annotate(tmp_path / "p", path, tmp_path / "out", nlp=nlp)
    assert (summary.n_records, summary.n_rejects) == (2, 2)
    assert spy.texts == 2 and spy.longest == limit
    assert read_rejects(tmp_path / "out") == [
        {"file": "runs.txt", "line": 1, "reason": f"{nlp.max_length} characters without whitespace at character 0, over the "
         f"limit of {limit} (spaCy's tokenizer takes time quadratic in such a run)"},
        {"file": "runs.txt", "line": 2, "reason": f"{limit + 1} characters without whitespace at character 2, over the "
         f"limit of {limit} (spaCy's tokenizer takes time quadratic in such a run)"},
    ]


def test_first_long_run_splits_where_spacy_does_and_finds_the_first_run_over_the_limit():
    find = annotate_io.first_long_run
    assert find("") is None and find("   ") is None and find("a" * 1000) is None
    assert find("ab cd", limit=2) is None and find("ab cde", limit=2) == (3, 3)
    # every str.isspace() character splits (so does spaCy's tokenizer); a zero-width space does not
    assert find("[[\u00a0[[\u2003[[\t[[\x1c[[", limit=2) is None
    assert find("[[\u200b[[", limit=2) == (0, 5)
    assert find("x " * 10 + "yyyy zzzzz", limit=3) == (20, 4)
    # a 1,000,000-character text of runs at the limit passes
    assert find(" ".join(["a" * 1000] * 999)) is None


# -- the output folder and the input path -------------------------------------------------------
def test_a_rejects_file_in_an_otherwise_empty_output_folder_is_kept_and_the_run_refused(blank, tmp_path):
    pipeline, nlp = blank
    path = tmp_path / "in.txt"
    path.write_text("paris\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "rejects.jsonl").write_text('{"file": "mine.jsonl", "line": 3, "reason": "kept by hand"}\n')
    with pytest.raises(AnnotateError, match=r"holds a rejects.jsonl but no manifest.json.*move that file away"):
        annotate(pipeline, path, out, nlp=nlp)
    assert (out / "rejects.jsonl").read_text() == '{"file": "mine.jsonl", "line": 3, "reason": "kept by hand"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["rejects.jsonl"]
    # An empty one (a run stopped between creating it and writing its manifest) is taken over.
    (out / "rejects.jsonl").write_text("")
    (out / ".lock").write_text("")
    assert annotate(pipeline, path, out, nlp=nlp).n_records == 1


@pytest.fixture
def alarm():
    """Turns a blocked open() (of a FIFO with no writer) into a failure instead of a hang."""
    def timeout(signum, frame):
        raise TimeoutError("blocked: the input was opened")

    before = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


def test_a_fifo_or_a_device_as_input_is_named_and_refused_without_opening_it(blank, tmp_path, alarm):
    pipeline, nlp = blank
    fifo = tmp_path / "corpus.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(AnnotateError, match=r"corpus.jsonl is a FIFO \(named pipe\), not a file or folder; .*save it to a file"):
        annotate(pipeline, fifo, tmp_path / "out", nlp=nlp)
    result = invoke(pipeline, "/dev/zero", tmp_path / "out")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: Input /dev/zero is a character device, not a file or folder;")
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_a_fifo_is_named(blank, tmp_path, alarm):
    pipeline, nlp = blank
    path = tmp_path / "in.txt"
    path.write_text("paris\n")
    os.mkfifo(tmp_path / "out")
    with pytest.raises(AnnotateError, match=r"Output .*out is a FIFO \(named pipe\); pass a folder"):
        annotate(pipeline, path, tmp_path / "out", nlp=nlp)
