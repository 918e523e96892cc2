"""Issue #16 part 1: ``spacy-electra annotate`` (streaming input, shards + manifest, resume,
rejects, n_process, clear errors)."""
import errno
import json
import os
import random
import subprocess
from pathlib import Path

import pytest
import spacy
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from typer.testing import CliRunner

from spacy_electra.annotate import AnnotateError, AnnotateInterrupted, annotate, doc_to_record
from spacy_electra.annotate import io as annotate_io
from spacy_electra.annotate import runner as annotate_runner
from spacy_electra.annotate.command import annotate_command

from ..conftest import trf_config, make_hf_checkpoint

PLACES = ("london", "paris", "york")
WORDS = ["the", "london", "paris", "york", "city", "cafe", "new", "is", "in", "was", "a", "of", "."]


def random_texts(n, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def build_pipeline(directory: Path) -> Path:
    """electra_transformer + listening electra_ner, electra_tagger, electra_textcat, trained a few
    steps on 'london'/'paris'/'york' as LOC (so records hold some entities)."""
    make_hf_checkpoint(directory / "ckpt", "ElectraForPreTraining", random_all=False)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(directory / "ckpt"), window=16, stride=12)})
    listener = {"@architectures": "spacy_electra.ElectraTransformerListener.v1", "upstream": "electra_transformer"}
    for name in ("electra_ner", "electra_tagger", "electra_textcat"):
        nlp.add_pipe(name, config={"model": {"tok2vec": listener}})
    examples = []
    for text in random_texts(12, seed=1):
        doc = nlp.make_doc(text)
        ref = doc.copy()
        places = [t.i for t in ref if t.text in PLACES]
        ref.ents = [Span(ref, i, i + 1, label="LOC") for i in places]
        for token in ref:
            token.tag_ = "NN" if token.i in places else "X"
        ref.cats = {"A": float(bool(places)), "B": float(not places)}
        examples.append(Example(doc, ref))
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    for _ in range(8):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(directory / "pipeline")
    return directory / "pipeline"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return build_pipeline(tmp_path_factory.mktemp("annotate"))


@pytest.fixture(scope="module")
def nlp(pipeline):
    return spacy.load(pipeline)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_records(output: Path):
    manifest = json.loads((output / "manifest.json").read_text())
    records = []
    for shard in manifest["shards"]:
        records += [json.loads(line) for line in (output / shard["file"]).read_text(encoding="utf-8").splitlines()]
    return records


def read_rejects(output: Path):
    return [json.loads(line) for line in (output / "rejects.jsonl").read_text().splitlines()]


def expected_records(nlp, rows, file_name):
    return [
        doc_to_record(doc, id=f"{file_name}:{i}", meta={k: v for k, v in row.items() if k != "text"})
        for i, (doc, row) in enumerate(zip(nlp.pipe([r["text"] for r in rows]), rows), start=1)
    ]


@pytest.fixture
def corpus(tmp_path):
    rows = [{"text": t, "n": i, "source": "unit"} for i, t in enumerate(random_texts(23, seed=3))]
    return write_jsonl(tmp_path / "corpus.jsonl", rows), rows


def test_records_equal_a_plain_nlp_pipe_and_carry_metadata(nlp, pipeline, corpus, tmp_path, one_torch_thread):
    path, rows = corpus
    summary = annotate(pipeline, path, tmp_path / "out", shard_size=10, batch_size=4, nlp=nlp)
    records = read_records(tmp_path / "out")
    assert records == expected_records(nlp, rows, "corpus.jsonl")
    first = records[0]
    assert first["id"] == "corpus.jsonl:1" and first["meta"] == {"n": 0, "source": "unit"}
    assert set(first) == {"id", "text", "meta", "entities", "tokens", "cats"}
    assert all(set(t) == {"start", "end", "tag"} for t in first["tokens"])
    assert all(r["text"][e["start"]:e["end"]] == e["text"] for r in records for e in r["entities"])
    assert any(r["entities"] for r in records)
    assert (summary.n_records, summary.n_rejects, summary.n_shards) == (23, 0, 3)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and [s["file"] for s in manifest["shards"]] == [
        "records-00000.jsonl", "records-00001.jsonl", "records-00002.jsonl"]
    assert manifest["totals"] == {"n_records": 23, "n_rejects": 0, "n_words": summary.n_words}


def test_plain_text_and_folders_are_read_in_order_with_relative_ids(nlp, pipeline, tmp_path, one_torch_thread):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("paris is new\nthe city\n")
    write_jsonl(folder / "a.jsonl", [{"body": "london cafe", "lang": "en"}])
    (folder / "sub" / "c.txt").write_text("york\r\n")  # CRLF
    (folder / ".hidden.txt").write_text("never read\n")
    (folder / "notes.md").write_text("not an input\n")
    annotate(pipeline, folder, tmp_path / "out", text_field="body", nlp=nlp)
    records = read_records(tmp_path / "out")
    assert [(r["id"], r["text"], r["meta"]) for r in records] == [
        ("a.jsonl:1", "london cafe", {"lang": "en"}), ("b.txt:1", "paris is new", {}),
        ("b.txt:2", "the city", {}), ("sub/c.txt:1", "york", {}),
    ]


def test_bad_records_go_to_rejects_with_file_line_and_reason(nlp, pipeline, tmp_path, one_torch_thread):
    lines = [
        b'{"text": "london is new"}',
        b'{"text": "paris", "broken": ',  # invalid JSON
        b'{"title": "no text"}',  # missing text field
        b'{"text": "caf\xe9 in latin-1"}',  # non-UTF-8 bytes
        b'{"text": "   "}',  # empty text
        b'{"text": 42}',  # not a string
        b'',  # blank line
        b'[1, 2]',  # not an object
        b'{"text": "york", "questions": "not a list"}',
        b'{"text": "the city"}',
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = annotate(pipeline, path, tmp_path / "out", shard_size=4, nlp=nlp)
    assert [r["id"] for r in read_records(tmp_path / "out")] == ["bad.jsonl:1", "bad.jsonl:10"]
    rejects = read_rejects(tmp_path / "out")
    assert [(r["file"], r["line"]) for r in rejects] == [("bad.jsonl", n) for n in (2, 3, 4, 5, 6, 7, 8, 9)]
    reasons = [r["reason"] for r in rejects]
    assert reasons[0].startswith("invalid JSON") and reasons[1] == "no 'text' field"
    assert reasons[2].startswith("not UTF-8: byte 0xe9") and reasons[3] == "empty text"
    assert "not a string" in reasons[4] and "empty line" in reasons[5] and "not an object" in reasons[6]
    assert "questions" in reasons[7]
    assert (summary.n_records, summary.n_rejects) == (2, 8)
    assert "8 rejected" in summary.line()


def test_text_longer_than_max_length_is_rejected_not_fatal(nlp, pipeline, tmp_path, one_torch_thread):
    path = tmp_path / "long.txt"
    path.write_text("paris\n" + "london " * 50 + "\nyork\n")
    before = nlp.max_length
    nlp.max_length = 100
    try:
        summary = annotate(pipeline, path, tmp_path / "out", nlp=nlp)
    finally:
        nlp.max_length = before
    assert summary.n_records == 2 and "max_length" in read_rejects(tmp_path / "out")[0]["reason"]


class InterruptAfter:
    """Stops a run with Ctrl-C after ``n`` records went to shard writers."""

    def __init__(self, monkeypatch, n, error=KeyboardInterrupt):
        self.n, self.error = n, error
        add = annotate_io.ShardWriter.add

        def counting_add(writer, doc, record):
            if self.n == 0:
                raise self.error() if isinstance(self.error, type) else self.error
            self.n -= 1
            add(writer, doc, record)

        monkeypatch.setattr(annotate_io.ShardWriter, "add", counting_add)


def test_rerun_after_ctrl_c_skips_finished_shards_and_never_duplicates(nlp, pipeline, tmp_path, monkeypatch, one_torch_thread):
    rows = [{"text": t} for t in random_texts(20, seed=4)]
    rows[5] = {"oops": 1}  # a reject in shard 1 (must not be duplicated either)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    annotate(pipeline, path, tmp_path / "reference", shard_size=6, nlp=nlp)

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        InterruptAfter(patch, 9)  # shard 0 (5 records + 1 reject) done, shard 1 half-written
        with pytest.raises(AnnotateInterrupted, match="1 finished shards are intact"):
            annotate(pipeline, path, out, shard_size=6, nlp=nlp)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == ["records-00000.jsonl"] and not manifest["complete"]
    assert sorted(p.name for p in out.iterdir()) == [".lock", "manifest.json", "records-00000.jsonl", "rejects.jsonl"]

    annotated = []
    real = annotate_runner.doc_to_record
    monkeypatch.setattr(annotate_runner, "doc_to_record", lambda doc, **kw: annotated.append(kw["id"]) or real(doc, **kw))
    summary = annotate(pipeline, path, out, shard_size=6, nlp=nlp)
    assert annotated[0] == "c.jsonl:7"  # shard 0 was not annotated again
    assert read_records(out) == read_records(tmp_path / "reference")
    assert read_rejects(out) == read_rejects(tmp_path / "reference") == [{"file": "c.jsonl", "line": 6, "reason": "no 'text' field"}]
    assert (summary.n_records, summary.n_rejects, summary.n_shards_resumed) == (19, 1, 1)
    # A finished run reruns as a no-op.
    annotated.clear()
    assert annotate(pipeline, path, out, shard_size=6, nlp=nlp).n_records == 19 and annotated == []


def test_rejects_written_past_the_last_finished_shard_are_cut_on_rerun(nlp, pipeline, tmp_path, one_torch_thread):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "paris"}, {"x": 1}, {"text": "york"}])
    out = tmp_path / "out"
    annotate(pipeline, path, out, shard_size=2, nlp=nlp)
    manifest = json.loads((out / "manifest.json").read_text())
    # Simulate a crash between appending shard 1's rejects and listing shard 1.
    manifest["shards"] = manifest["shards"][:1]
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    with open(out / "rejects.jsonl", "a") as handle:
        handle.write('{"file": "c.jsonl", "line": 99, "reason": "left by a crash"}\n')
    (out / ".records-00001.jsonl.tmp").write_text("partial")
    annotate(pipeline, path, out, shard_size=2, nlp=nlp)
    assert len(read_rejects(out)) == 1 and [r["text"] for r in read_records(out)] == ["paris", "york"]
    assert not list(out.glob(".*.tmp"))


def test_disk_full_is_a_clear_error_and_finished_shards_stay_listed(nlp, pipeline, corpus, tmp_path, monkeypatch, one_torch_thread):
    path, rows = corpus
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        InterruptAfter(patch, 12, error=OSError(errno.ENOSPC, "No space left on device"))
        with pytest.raises(AnnotateError, match="Disk full.*2 finished shards are intact and listed"):
            annotate(pipeline, path, out, shard_size=5, nlp=nlp)
    assert [r["id"] for r in read_records(out)] == [f"corpus.jsonl:{i}" for i in range(1, 11)]
    annotate(pipeline, path, out, shard_size=5, nlp=nlp)
    assert read_records(out) == expected_records(nlp, rows, "corpus.jsonl")


def _mount_tmpfs(target: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    target.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True).returncode == 0


def test_a_really_full_disk_keeps_every_finished_shard_intact(nlp, pipeline, tmp_path, one_torch_thread):
    """On a 64 KiB tmpfs: the run stops with the disk-full error; what the manifest lists is there and parses."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("needs root and mount -t tmpfs (a real full disk); the ENOSPC test above covers the logic")
    try:
        rows = [{"text": " ".join(["london paris york city"] * 10)} for _ in range(120)]
        path = write_jsonl(tmp_path / "big.jsonl", rows)
        with pytest.raises(AnnotateError, match="Disk full"):
            annotate(pipeline, path, disk / "out", shard_size=4, nlp=nlp)
        manifest = json.loads((disk / "out" / "manifest.json").read_text())
        assert 0 < len(manifest["shards"]) < 30
        records = read_records(disk / "out")
        assert len(records) == 4 * len(manifest["shards"]) == manifest["totals"]["n_records"]
        assert not list((disk / "out").glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_different_run_in_the_same_folder_is_refused_before_any_work(pipeline, corpus, tmp_path, nlp, monkeypatch, one_torch_thread):
    path, rows = corpus
    out = tmp_path / "out"
    annotate(pipeline, path, out, shard_size=10, nlp=nlp)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(annotate_runner, "load_pipeline", lambda *a, **k: pytest.fail("loaded the pipeline"))
    with pytest.raises(AnnotateError, match=r"holds a different run \(differs in: options.shard_size\)"):
        annotate(pipeline, path, out, shard_size=5)
    write_jsonl(tmp_path / "other.jsonl", rows[:3])
    with pytest.raises(AnnotateError, match=r"differs in: input.files, input.path"):
        annotate(pipeline, tmp_path / "other.jsonl", out, shard_size=10)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_two_runs_never_write_to_one_folder_at_once(pipeline, corpus, tmp_path, nlp):
    path, _ = corpus
    with annotate_io.lock_folder(tmp_path / "out"):  # as if another run held it
        with pytest.raises(AnnotateError, match="Another annotate run is writing to"):
            annotate(pipeline, path, tmp_path / "out", nlp=nlp)
    assert annotate(pipeline, path, tmp_path / "out", nlp=nlp).n_records == 23


def invoke(*args):
    app = typer.Typer()
    app.command()(annotate_command)
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_errors_are_one_clear_line_before_any_work(pipeline, corpus, tmp_path):
    path, _ = corpus
    result = invoke(tmp_path / "no-such-pipeline", path, tmp_path / "out")
    assert result.exit_code == 1 and "not found: no such folder and no installed package" in result.output
    result = invoke("en_no_such_package_xyz", path, tmp_path / "out")
    assert result.exit_code == 1 and "not found" in result.output
    result = invoke(pipeline, tmp_path / "missing.jsonl", tmp_path / "out")
    assert result.exit_code == 1 and "missing.jsonl does not exist" in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something.txt").write_text("x")
    result = invoke(pipeline, path, tmp_path / "full")
    assert result.exit_code == 1 and "not empty and has no manifest.json" in result.output
    result = invoke(pipeline, tmp_path, tmp_path / "out")
    assert result.exit_code == 1 and "inside the input folder" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_runs_and_ends_with_counts_and_where_the_output_is(pipeline, tmp_path, one_torch_thread):
    path = tmp_path / "in.txt"
    path.write_text("london is new\n\nparis\n")
    result = invoke(pipeline, path, tmp_path / "out", "--batch-size", 2, "--shard-size", 2)
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Annotated 2 docs (4 words), 1 rejected") and str(tmp_path / "out") in last


def test_progress_bar_shows_docs_and_words_per_second(nlp, pipeline, corpus, tmp_path, capsys, one_torch_thread):
    path, _ = corpus
    annotate(pipeline, path, tmp_path / "out", progress=True, nlp=nlp)
    err = capsys.readouterr().err
    assert "docs/s" in err and "words/s" in err and "100%" in err


def test_n_process_2_gives_the_same_records_as_1(pipeline, corpus, tmp_path):
    path, _ = corpus
    annotate(pipeline, path, tmp_path / "one", shard_size=8, batch_size=4)
    annotate(pipeline, path, tmp_path / "two", shard_size=8, batch_size=4, n_process=2)
    for name in ("records-00000.jsonl", "records-00001.jsonl", "records-00002.jsonl", "rejects.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_spacy_output_shards_hold_the_docs_with_id_and_meta(nlp, pipeline, corpus, tmp_path, one_torch_thread):
    path, rows = corpus
    annotate(pipeline, path, tmp_path / "out", output_format="spacy", shard_size=10, nlp=nlp)
    docs = []
    for name in ("docs-00000.spacy", "docs-00001.spacy", "docs-00002.spacy"):
        docs += list(DocBin().from_disk(tmp_path / "out" / name).get_docs(nlp.vocab))
    expected = expected_records(nlp, rows, "corpus.jsonl")
    assert [doc_to_record(d, id=d.user_data["id"], meta=d.user_data["meta"]) for d in docs] == expected


@Language.component("annotate_test_qa")
def fake_qa(doc):
    """Stands in for electra_span_qa: answers each question with the doc's first token."""
    if doc._.questions:
        doc._.qa_results = [{"question": q, "start": 0, "end": 1, "no_answer": i > 0, "score": 0.5}
                            for i, q in enumerate(doc._.questions)]
        doc.spans["qa"] = [Span(doc, 0, 1, label="0")]
    return doc


@pytest.fixture
def qa_extensions():
    for name in ("questions", "qa_results"):
        Doc.set_extension(name, default=None, force=True)
    yield
    for name in ("questions", "qa_results"):
        Doc.remove_extension(name)


def test_questions_reach_a_qa_component_and_answers_and_spans_are_recorded(tmp_path, qa_extensions):
    nlp = spacy.blank("en")
    nlp.add_pipe("annotate_test_qa")
    nlp.to_disk(tmp_path / "qa")
    rows = [{"text": "Paris is big", "questions": ["Which city?", "Why?"]}, {"text": "no questions here"}]
    annotate(tmp_path / "qa", write_jsonl(tmp_path / "q.jsonl", rows), tmp_path / "out", nlp=nlp)
    first, second = read_records(tmp_path / "out")
    assert first["meta"] == {"questions": ["Which city?", "Why?"]}
    assert first["answers"] == [
        {"question": "Which city?", "text": "Paris", "start": 0, "end": 5, "score": 0.5},
        {"question": "Why?", "text": "", "start": None, "end": None, "score": 0.5},
    ]
    assert first["spans"] == {"qa": [{"start": 0, "end": 5, "label": "0", "text": "Paris"}]}
    assert "answers" not in second and "spans" not in second


def test_the_real_span_qa_component_gets_the_questions_in_one_or_two_processes(tmp_path):
    from ..qa.test_span_qa import ANSWER, QUESTION, SKY, hand_built_checkpoint, qa_pipeline

    nlp = qa_pipeline(hand_built_checkpoint(tmp_path / "ckpt"))
    nlp.initialize()
    nlp.to_disk(tmp_path / "qa")
    rows = [{"text": SKY, "questions": ["", QUESTION]}, {"text": "No answer here.", "questions": ["Why?"]}, {"text": SKY}]
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    for n_process in (1, 2):
        annotate(tmp_path / "qa", path, tmp_path / f"out{n_process}", n_process=n_process)
        first, second, third = read_records(tmp_path / f"out{n_process}")
        assert [(a["question"], a["text"]) for a in first["answers"]] == [("", ""), (QUESTION, ANSWER)]
        start = first["answers"][1]["start"]
        assert SKY[start:first["answers"][1]["end"]] == ANSWER
        assert first["spans"] == {"qa": [{"start": start, "end": start + len(ANSWER), "label": "1", "text": ANSWER}]}
        assert second["answers"][0]["text"] == "" and second["answers"][0]["start"] is None
        assert "answers" not in third and first["meta"] == {"questions": ["", QUESTION]}
    assert (tmp_path / "out1" / "records-00000.jsonl").read_bytes() == (tmp_path / "out2" / "records-00000.jsonl").read_bytes()


@Language.component("annotate_test_threads")
def record_torch_threads(doc):
    import torch

    doc.user_data["torch_threads"] = torch.get_num_threads()
    return doc


def test_forked_workers_run_torch_on_one_thread(tmp_path):
    """The runner's own at-fork hook (no encoder in this pipeline to do it)."""
    import torch

    nlp = spacy.blank("en")
    nlp.add_pipe("annotate_test_threads")
    nlp.to_disk(tmp_path / "threads")
    path = tmp_path / "in.txt"
    path.write_text("paris\nlondon\nyork\nthe city\n")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for n_process in (1, 2):
            annotate(tmp_path / "threads", path, tmp_path / f"out{n_process}", output_format="spacy", n_process=n_process, batch_size=1)
            docs = DocBin().from_disk(tmp_path / f"out{n_process}" / "docs-00000.spacy").get_docs(nlp.vocab)
            assert [d.user_data["torch_threads"] for d in docs] == [2 if n_process == 1 else 1] * 4
    finally:
        torch.set_num_threads(before)
