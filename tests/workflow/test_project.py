"""The `spacy project` workflow end to end (the main job, with smaller numbers) on a fresh clone:
the repository's files alone, with no ../shared beside them, so the demo runs on the data
committed under data/demo. Every stage runs, every task ends with a non-zero dev score, the
packaged pipeline loads by name in a fresh virtualenv with the training folders deleted, and a
second run reruns nothing. Also: the errors a new user meets first."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..synthetic_data import write_data_dir

pytestmark = pytest.mark.slow  # spacy project runs in subprocesses: minutes in all

ROOT = Path(__file__).resolve().parents[2]
# Test sizes for the embedded data: QA (about 30 questions a step) is the costly task, so it gets
# the fewest steps; it only has to reach a non-zero qa_exact (abstaining is right for about half
# of SQuAD 2.0's questions). NER on WNUT-17 needs about 100 steps to find any entity.
SMALL = {
    "pretrain_docs": 200, "pretrain_steps": 20, "vocab_size": 1000, "tagger_steps": 40, "ner_steps": 100,
    "textcat_steps": 40, "qa_steps": 10, "eval_frequency": 20, "train_limit": 100, "dev_limit": 20,
    "eval_limit": 30,
}
MAIN_SCORES = {"tagger": "tag_acc", "ner": "ents_f", "textcat": "cats_score", "qa": "qa_exact"}


def repository_files() -> list:
    """What a clone has: tracked files and new files git does not ignore."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout of the repository (git ls-files)")
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def fresh_clone(tmp_path: Path) -> Path:
    project = tmp_path / "clone" / "project"
    for name in repository_files():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    assert not (project.parent / "shared").exists()  # no ../shared/data beside it
    return project


def project_copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project)
    shutil.copy(ROOT / "constraints.txt", project)
    shutil.copytree(ROOT / "configs", project / "configs")
    return project


def spacy_project(project: Path, *args: str, vars: dict, check: bool = True) -> subprocess.CompletedProcess:
    overrides = [f"--vars.{k}={v}" for k, v in vars.items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "spacy", "project", "run", *args, str(project), *overrides],
                          cwd=project, env=env, capture_output=True, text=True, timeout=2400)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def test_fresh_clone_runs_the_demo_on_embedded_data_then_nothing_reruns(tmp_path):
    project = fresh_clone(tmp_path)
    first = spacy_project(project, "demo", vars=SMALL)
    assert "data/demo" in json.loads((project / "corpus" / "data.json").read_text())["data_dir"]
    summary = (project / "metrics" / "summary.md").read_text()
    assert summary in first.stdout  # the table is printed at the end of the workflow
    for task, key in MAIN_SCORES.items():
        metrics = json.loads((project / "metrics" / f"{task}.json").read_text())
        assert metrics["n_docs"] > 0 and metrics["scores"][key] > 0, (task, metrics["scores"])
        assert metrics["words_per_second"] > 0
    assert (project / "checkpoints" / "encoder" / "config.json").exists()  # kept for the user
    assert "Fresh virtualenv, spacy.load" in first.stdout

    second = spacy_project(project, "demo", vars=SMALL)
    assert "Running command" not in second.stdout, second.stdout[-3000:]
    assert second.stdout.count("Skipping") == 13

    # The packaged pipeline needs nothing the workflow left behind.
    for folder in ("training", "checkpoints", "corpus", "data"):
        shutil.rmtree(project / folder)
    python = project / "packages" / "venv" / "bin" / "python"
    code = (
        "import spacy; nlp = spacy.load('en_electra_pipeline'); doc = nlp('Alice works for Acme in Paris .');"
        "qa = nlp.get_pipe('qa').answer(doc.text, ['Where does Alice work ?'])[0];"
        "print(nlp.pipe_names, [t.tag_ for t in doc], doc.cats, qa.question);"
        "import json; print(json.dumps(nlp.meta['performance']))"
    )
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "['tagger', 'ner', 'textcat', 'qa']" in out.stdout and "melville-moby_dick" in out.stdout
    # The installed package's meta carries the dev scores `evaluate` wrote, under spaCy's keys.
    performance = json.loads(out.stdout.strip().splitlines()[-1])
    for task, key in MAIN_SCORES.items():
        metrics = json.loads((project / "metrics" / f"{task}.json").read_text())
        assert performance[key] == pytest.approx(metrics["scores"][key], abs=1e-9)  # spaCy writes 10 decimals
        assert performance[f"{task}_words_per_second"] == pytest.approx(round(metrics["words_per_second"], 1))


def test_missing_data_is_named_with_its_source(tmp_path):
    project = project_copy(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = spacy_project(project, "demo", vars={"data_dir": str(empty)}, check=False)
    assert proc.returncode != 0
    for name in ("pos/ud_english_ewt_slice/train.conllu", "ner/wnut17_slice/dev.conll",
                 "textcat/gutenberg_books/train.tsv", "qa/squad2_slice/dev.json", "pretrain/gutenberg"):
        assert name in proc.stderr, name  # all of them, in one run
    assert not (project / "corpus" / "text.txt").exists()  # nothing started
    data = write_data_dir(tmp_path / "data", n_train=5, n_dev=2)
    (data / "ner" / "conll2003" / "valid.txt").unlink()
    (data / "textcat" / "sst2" / "dev.tsv").unlink()
    proc = spacy_project(project, "finetune", vars={"data_dir": str(data), "checkpoint": "x"}, check=False)
    assert proc.returncode != 0
    assert "ner/conll2003/valid.txt" in proc.stderr and "textcat/sst2/dev.tsv" in proc.stderr
    assert "research use only" in proc.stderr
    proc = spacy_project(project, "demo", vars={"data_dir": str(tmp_path / "nowhere")}, check=False)
    assert "does not exist" in proc.stderr and "--vars.data_dir" in proc.stderr
    proc = spacy_project(project, "demo", vars={"data_dir": str(project / "project.yml")}, check=False)
    assert "is a file, not a folder" in proc.stderr


def test_all_refuses_the_demo_sizes_and_finetune_needs_a_checkpoint(tmp_path):
    project = project_copy(tmp_path)
    data = write_data_dir(tmp_path / "data", n_train=5, n_dev=2)
    proc = spacy_project(project, "all", vars={"data_dir": str(data)}, check=False)
    assert proc.returncode != 0 and "--vars.preset small" in proc.stderr
    proc = spacy_project(project, "finetune", vars={"data_dir": str(data)}, check=False)
    assert proc.returncode != 0 and "--vars.checkpoint" in proc.stderr
    not_electra = tmp_path / "not-electra"
    not_electra.mkdir()
    (not_electra / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    proc = spacy_project(project, "finetune", vars={"data_dir": str(data), "checkpoint": str(not_electra)}, check=False)
    assert proc.returncode != 0 and "gpt2" in proc.stderr
    assert not any((project / "training").iterdir())  # refused before any training


ADAPT = {
    "tagger_steps": 4, "ner_steps": 4, "textcat_steps": 4, "qa_steps": 2, "eval_frequency": 2, "train_limit": 10,
    "dev_limit": 4, "eval_limit": 4, "adapt_steps": 3, "learn_rate": 0.001,
}


def test_adapt_continues_pretraining_from_the_checkpoint_and_compares_with_finetune(tmp_path):
    """The adapt workflow at toy sizes: continued RTD from vars.checkpoint on the tasks' own text,
    the four tasks fine-tuned from the adapted encoder, and metrics/summary.md with one
    comparison row per task against fine-tuning from the checkpoint itself."""
    from safetensors.torch import load_file

    from ..conftest import make_hf_checkpoint

    project = project_copy(tmp_path)
    data = write_data_dir(tmp_path / "data", n_train=12, n_dev=4)
    make_hf_checkpoint(tmp_path / "ckpt", "ElectraForPreTraining", random_all=False)
    vars = {**ADAPT, "data_dir": str(data), "checkpoint": str(tmp_path / "ckpt")}
    first = spacy_project(project, "adapt", vars=vars)
    text = (project / "corpus" / "adapt_text.txt").read_text()
    assert "Wrote" in first.stdout and text.strip()  # the tasks' own training text
    adapted = load_file(project / "training" / "adapt" / "discriminator" / "model.safetensors")
    original = load_file(project / "checkpoints" / "encoder" / "model.safetensors")
    name = next(k for k in adapted if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not (adapted[name] == original[name]).all()  # continued pretraining moved the weights
    summary = (project / "metrics" / "summary.md").read_text()
    assert "| task | score | finetune | adapted | difference |" in summary
    for task, key in MAIN_SCORES.items():
        base = json.loads((project / "metrics" / f"{task}.json").read_text())["scores"]
        other = json.loads((project / "metrics" / "adapted" / f"{task}.json").read_text())["scores"]
        main = next(k for k in (key, "qa_f1", "ents_f", "cats_score", "tag_acc") if k in base)
        assert f"| {task} | " in summary.split("difference |")[1], task
        assert main in other
    second = spacy_project(project, "adapt", vars=vars)
    assert "Running command" not in second.stdout, second.stdout[-3000:]
    # distill-ner (no workflow): a 1-layer student of the NER pipeline just trained
    spacy_project(project, "distill-ner", vars={**vars, "student_layers": 1, "distill_steps": 2})
    student = project / "training" / "students" / "ner" / "model-last"
    assert json.loads((student / "meta.json").read_text())["pipeline"] == ["ner"]
