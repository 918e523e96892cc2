"""Every code block in README.md runs as written (with tiny sizes), so a snippet that drifts
fails CI. Blocks run in order in one scratch folder laid out like the repository: ``configs/``,
``project.yml`` and the demo's ``data/`` copied in, and a small synthetic ``../shared/data`` beside it.

An HTML comment right before a block says how it is checked:
- ``readme-test: setup``: the set-up commands; they must be what ``.ci/run`` and the Makefile run
  (CI itself runs them, and the workflow test runs the main job);
- ``readme-test: dry``: ``spacy project run`` lines, run with ``--dry``;
- ``readme-test: append ARGS``: ARGS (tiny sizes) are appended to the block's last command;
- ``readme-test: skip (why)``: not run, and the reason must name the test that covers it.
Python blocks run as scripts, ini blocks must parse and name only registered functions, text
blocks are output samples.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .synthetic_data import write_data_dir

pytestmark = pytest.mark.slow  # every README block, the workflow's among them: about a minute and a half

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<directive>.*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def readme_blocks():
    return [m.groupdict() for m in BLOCK.finditer((ROOT / "README.md").read_text())]


def commands(body):
    """Command lines of a bash block, continuations joined, comments dropped."""
    joined = body.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip() if not line.strip().startswith("#") else ""
        if line:
            out.append(line)
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    write_data_dir(root / "shared" / "data", n_train=30, n_dev=10)
    work = root / "work"
    work.mkdir()
    shutil.copytree(ROOT / "configs", work / "configs")
    shutil.copytree(ROOT / "data", work / "data")
    shutil.copy(ROOT / "project.yml", work / "project.yml")
    return work


def run(cmd, cwd, shell=False):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(cmd, cwd=cwd, env=env, shell=shell, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_readme_has_blocks_of_every_kind():
    kinds = {b["lang"] for b in readme_blocks()}
    assert {"bash", "python", "ini"} <= kinds


def test_every_readme_block_runs_as_written(scratch):
    import spacy
    from spacy.util import registry
    from thinc.api import Config

    import spacy_electra.qa  # noqa: F401

    spacy.blank("en")  # registers spaCy's own factories for the ini checks
    ran = {"python": 0, "bash": 0, "ini": 0}
    for i, block in enumerate(readme_blocks()):
        directive, lang, body = block["directive"] or "", block["lang"], block["body"]
        if lang == "text":
            continue
        if directive.startswith("skip"):
            assert re.search(r"test", directive), f"block {i}: a skipped block must name the test that covers it"
            continue
        if directive == "setup":
            lines = commands(body)
            assert [ln.split()[:2] for ln in lines] == [["make", "main"], ["make", "test"]]
            assert "make test" in (ROOT / ".ci" / "run").read_text()
            makefile = (ROOT / "Makefile").read_text()
            assert "spacy project run demo" in makefile and re.search(r"pytest -q( --durations=\d+)? tests", makefile)
            continue
        if lang == "python":
            script = scratch / f"readme_block_{i}.py"
            script.write_text(body)
            run([sys.executable, script.name], scratch)
        elif lang == "ini":
            config = Config().from_str(_with_parent_sections(body), interpolate=False)
            for path, value in _walk(config):
                if path[-1].startswith("@"):
                    registry.find(path[-1][1:], value)
                if path[-1] == "factory":
                    assert spacy.language.Language.has_factory(value) or value in _plugin_factories(), value
        elif lang == "bash":
            lines = commands(body)
            if directive == "dry":
                for line in lines:
                    assert line.startswith("spacy project run"), line
                    run(shlex.split(line.replace("spacy project run", f"{sys.executable} -m spacy project run")) + ["--dry"], scratch)
            else:
                extra = directive[len("append "):] if directive.startswith("append ") else ""
                for j, line in enumerate(lines):
                    if j == len(lines) - 1 and extra:
                        line = f"{line} {extra}"
                    run(line, scratch, shell=True)
        else:
            pytest.fail(f"block {i} has no language ({lang!r}); mark it text, bash, python or ini")
        ran[lang] = ran.get(lang, 0) + 1
    assert ran["python"] >= 4 and ran["bash"] >= 3 and ran["ini"] >= 3, ran


def _plugin_factories():
    from importlib.metadata import entry_points

    return {ep.name for group in ("spacy_factories", "spacy_internal_factories") for ep in entry_points(group=group)}


def _with_parent_sections(fragment):
    """A README config fragment shows only the sections that matter; confection needs every
    parent section ([components] before [components.ner]) declared."""
    headers = re.findall(r"(?m)^\[([^\]]+)\]$", fragment)
    parents = []
    for header in headers:
        parts = header.split(".")
        for k in range(1, len(parts)):
            parent = ".".join(parts[:k])
            if parent not in headers and parent not in parents:
                parents.append(parent)
    return "".join(f"[{p}]\n" for p in parents) + fragment


def _walk(config, path=()):
    for key, value in config.items():
        if isinstance(value, dict):
            yield from _walk(value, path + (key,))
        else:
            yield path + (key,), value
