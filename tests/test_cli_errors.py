"""The command line's error contract: a known failure is one `Error:` line on stderr and exit
status 1; `--verbose` adds the traceback; an unexpected exception keeps its traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from spacy_electra.cli import app
from spacy_electra.cli_errors import OneLineErrors, verbose_option

ROOT = Path(__file__).resolve().parents[1]


def test_checkpoint_error_is_one_line_without_traceback(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = CliRunner().invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: No weights in {tmp_path}") and result.output.count("\n") == 1
    verbose = CliRunner().invoke(app, ["--verbose", "info", str(tmp_path)])
    assert verbose.exit_code == 1 and "Traceback" in verbose.output and "CheckpointError" in verbose.output


def test_console_script_prints_only_the_line_on_stderr(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spacy_electra", "info", str(tmp_path / "absent")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"Error: '{tmp_path / 'absent'}' is neither an existing local folder")
    assert proc.stderr.count("\n") == 1


def test_os_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path):
    demo = typer.Typer(cls=OneLineErrors)
    demo.callback()(verbose_option)

    @demo.command("read")
    def read(path: Path) -> None:
        path.read_text()

    @demo.command("bug")
    def bug() -> None:
        raise KeyError("a programming error")

    result = CliRunner().invoke(demo, ["read", str(tmp_path / "missing.txt")])
    assert result.exit_code == 1 and result.output.startswith("Error: [Errno 2] No such file or directory")
    crashed = CliRunner().invoke(demo, ["bug"])
    assert crashed.exit_code == 1 and isinstance(crashed.exception, KeyError)


def test_help_texts_keep_package_extras():
    """The extras are named without square brackets, which rich markup swallows under
    `spacy-electra` and which would show escaped under `python -m spacy electra`."""
    import os
    import subprocess
    import sys

    result = CliRunner().invoke(app, ["annotate", "--help"], env={**os.environ, "COLUMNS": "300"})
    spacy_help = subprocess.run([sys.executable, "-m", "spacy", "electra", "annotate", "--help"], capture_output=True, text=True,
                                env={**os.environ, "COLUMNS": "300"}, timeout=120).stdout
    for text in (result.output, spacy_help):
        flat = " ".join(text.split())
        assert "ray extra" in flat and "onnx extra" in flat and "\\[" not in text, text
