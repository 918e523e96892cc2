"""check-data and download-data without running a workflow: every missing file named in one
error, bad data_dir values refused, downloads that fail or arrive corrupted leave nothing behind,
and project.yml's assets agree with the module's list of datasets."""
import hashlib
import io
from pathlib import Path

import pytest
import srsly
from typer.testing import CliRunner

from spacy_electra.cli import app
from spacy_electra.workflow.data import (
    DEMO_DATASETS, FULL_DATASETS, DataError, check_data, download, download_data,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = ROOT / "data" / "demo"


def check(data_dir: Path, *args: str):
    return CliRunner().invoke(app, ["check-data", str(data_dir), *args])


def demo_files():
    return [f.path for d in DEMO_DATASETS.values() for f in d.files]


def test_the_embedded_demo_data_is_complete():
    found = check_data(DEMO_DATA, DEMO_DATASETS, "demo")
    assert len(found) == len(demo_files())
    for name in demo_files():
        assert (DEMO_DATA / name).exists(), name
    licence_notes = (DEMO_DATA / "README.md").read_text()
    for word in ("CC BY-SA 4.0", "CC BY 4.0", "public domain", "WNUT-17", "SQuAD 2.0", "UD English-EWT"):
        assert word in licence_notes, word
    size = sum(p.stat().st_size for p in DEMO_DATA.rglob("*") if p.is_file())
    assert size < 5_000_000, size  # a few MB, not the full sets


def test_every_missing_file_is_named_in_one_error(tmp_path):
    data = tmp_path / "data"
    (data / "pos" / "ud_english_ewt_slice").mkdir(parents=True)
    (data / "pos" / "ud_english_ewt_slice" / "train.conllu").write_text("")
    (data / "qa" / "squad2_slice").mkdir(parents=True)
    (data / "qa" / "squad2_slice" / "dev.json").write_text("{}")
    result = check(data)
    assert result.exit_code == 1
    err = result.output.strip()
    assert err.count("\n") == 0, err  # one line
    present = ("pos/ud_english_ewt_slice/train.conllu", "qa/squad2_slice/dev.json")
    missing = [n for n in demo_files() if n not in present]
    for name in missing:
        assert name in err, name
    assert "lacks 7 file(s)" in err and "--vars.data_dir" in err
    assert "ud_english_ewt_slice/train.conllu" not in err


def test_an_empty_folder_lists_everything(tmp_path):
    result = check(tmp_path, "--workflow", "finetune", "--task", "tagger", "--task", "ner", "--task", "textcat",
                   "--task", "qa")
    assert result.exit_code == 1
    assert "(the folder is empty)" in result.output and "lacks 8 file(s) of the `finetune` workflow" in result.output
    assert "research use only" in result.output  # CoNLL-2003: obtain it yourself
    assert "../shared/data" in result.output


def test_a_file_or_a_missing_folder_is_refused(tmp_path):
    a_file = tmp_path / "README.md"
    a_file.write_text("not data")
    result = check(a_file)
    assert result.exit_code == 1 and "is a file, not a folder" in result.output
    result = check(tmp_path / "nowhere")
    assert result.exit_code == 1 and "does not exist" in result.output and "--vars.data_dir" in result.output


def test_complete_data_writes_the_list(tmp_path):
    out = tmp_path / "data.json"
    result = check(DEMO_DATA, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert len(srsly.read_json(out)["files"]) == len(demo_files())


class Body(io.BytesIO):
    """A response whose read fails after ``fail_after`` bytes (a cut connection)."""

    def __init__(self, data: bytes, fail_after: int = -1) -> None:
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        if 0 <= self.fail_after <= self.tell():
            raise ConnectionResetError("connection reset by peer")
        return super().read(min(n, 100) if n > 0 else 100)


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_failed_download_leaves_nothing(tmp_path):
    data = b"1\tword\n" * 1000
    md5 = hashlib.md5(data).hexdigest()
    dest = tmp_path / "pos" / "train.conllu"
    with pytest.raises(DataError, match="nothing was written"):
        download("https://example.org/x", dest, md5, opener=lambda url: Body(data, fail_after=300))
    assert leftovers(dest.parent) == []
    with pytest.raises(DataError, match="MD5"):
        download("https://example.org/x", dest, md5, opener=lambda url: Body(data[:-5]))
    assert leftovers(dest.parent) == []
    dest.write_bytes(b"an older copy")  # a failure never touches what was there
    with pytest.raises(DataError):
        download("https://example.org/x", dest, md5, opener=lambda url: Body(data, fail_after=0))
    assert dest.read_bytes() == b"an older copy" and leftovers(dest.parent) == ["train.conllu"]
    assert download("https://example.org/x", dest, md5, opener=lambda url: Body(data)) is True
    assert dest.read_bytes() == data and leftovers(dest.parent) == ["train.conllu"]
    assert download("https://example.org/x", dest, md5, opener=lambda url: Body(b"")) is False  # checksum matches


def test_download_data_fetches_the_public_files_and_names_the_rest(tmp_path):
    urls = {}

    def opener(url: str) -> Body:
        urls[url] = True
        raise OSError("offline")

    with pytest.raises(DataError, match="offline"):
        download_data(tmp_path, ["tagger"], opener=opener)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    urls.clear()
    fetched, present, manual = download_data(tmp_path, ["ner", "textcat", "qa"], opener=opener)
    assert fetched == present == [] and len(manual) == 6 and not urls
    assert any("conll2003/train.txt" in line and "research use only" in line for line in manual)


def test_project_assets_match_the_datasets():
    project = srsly.read_yaml(ROOT / "project.yml")
    assets = {a["dest"].replace("${vars.data_dir}/", ""): a for a in project["assets"]}
    for dataset in FULL_DATASETS.values():
        for f in dataset.files:
            assert f.path in assets, f.path
            asset = assets[f.path]
            assert asset.get("url") == f.url, f.path
            if f.md5:
                assert asset["checksum"] == f.md5
    assert project["vars"]["data_dir"] == "data/demo"


def test_make_main_passes_vars_to_the_demo():
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("needs make")
    out = subprocess.run(["make", "-n", "-W", ".venv/.installed", "main", "VARS=--vars.data_dir /somewhere"],
                         cwd=ROOT, capture_output=True, text=True)
    assert "spacy project run demo . --vars.data_dir /somewhere" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_the_wheel_holds_no_data(tmp_path):
    import subprocess
    import sys
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("spacy_electra-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"spacy_electra", wheel.name.split("-py3")[0] + ".dist-info"}
    assert not [n for n in names if n.endswith((".conllu", ".conll", ".tsv", ".json")) or "/data/demo" in n]


def test_installed_source_is_found_past_a_shadowing_egg_info(tmp_path):
    """Run from a folder holding a ``spacy_electra.egg-info`` (as a checkout does after
    ``pip install -e .``), the install's own record (direct_url.json) still names the source."""
    import subprocess
    import sys
    from pathlib import Path

    info = tmp_path / "spacy_electra.egg-info"
    info.mkdir()
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: spacy-electra\nVersion: 0.1.0\n")
    code = "from spacy_electra.workflow.package import installed_source; print(installed_source())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (Path(out.stdout.strip()) / "setup.cfg").is_file()


def test_adapt_text_takes_the_tasks_text_or_the_domain_text(tmp_path):
    """adapt-text (workflow adapt): `task` reads the converted tasks' training docs, `domain`
    samples data_dir/pretrain; an unknown mode or missing inputs are one line, nothing written."""
    import spacy
    from spacy.tokens import DocBin
    from typer.testing import CliRunner

    from spacy_electra.cli import app

    nlp = spacy.blank("en")
    for i, task in enumerate(("tagger", "ner", "textcat", "qa")):
        (tmp_path / "corpus" / task).mkdir(parents=True)
        DocBin(docs=[nlp(f"Text of {task} number {i} .")]).to_disk(tmp_path / "corpus" / task / "train.spacy")
    (tmp_path / "data" / "pretrain").mkdir(parents=True)
    (tmp_path / "data" / "pretrain" / "book.txt").write_text("A domain paragraph .\n\nAnother one .\n")
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "data"), "--corpus", str(tmp_path / "corpus")]
    out = tmp_path / "task.txt"
    assert runner.invoke(app, ["adapt-text", "task", *base, "--output", str(out)]).exit_code == 0
    assert sorted(out.read_text().split("\n\n")[:4]) == sorted(f"Text of {t} number {i} ." for i, t in
                                                                enumerate(("tagger", "ner", "textcat", "qa")))
    out = tmp_path / "domain.txt"
    assert runner.invoke(app, ["adapt-text", "domain", *base, "--output", str(out)]).exit_code == 0
    assert sorted(out.read_text().split()) == sorted("A domain paragraph . Another one .".split())
    bad = runner.invoke(app, ["adapt-text", "everything", *base, "--output", str(tmp_path / "x.txt")])
    assert bad.exit_code == 1 and "use task" in bad.output and not (tmp_path / "x.txt").exists()
    (tmp_path / "corpus" / "qa" / "train.spacy").unlink()
    missing = runner.invoke(app, ["adapt-text", "task", *base, "--output", str(tmp_path / "x.txt")])
    assert missing.exit_code == 1 and "qa/train.spacy not found" in missing.output
    checked = runner.invoke(app, ["check-data", str(tmp_path / "empty"), "--adapt-on", "sometimes"])
    assert checked.exit_code == 1 and "adapt_on='sometimes'" in checked.output
