"""Hardening of ``spacy-electra annotate`` against hostile input: inputs or output folders that
are not what they seem are refused in one line."""
import os
import signal

import pytest
import spacy

from spacy_electra.annotate import AnnotateError, annotate

from .test_annotate import invoke


@pytest.fixture(scope="module")
def blank(tmp_path_factory):
    """A tokenizer-only pipeline: these tests are about the input, not the model."""
    folder = tmp_path_factory.mktemp("blank") / "pipeline"
    spacy.blank("en").to_disk(folder)
    return folder, spacy.load(folder)


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
