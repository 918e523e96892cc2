"""``spacy electra ...``: importing the ``spacy_cli`` entry point's module adds our commands to
spaCy's CLI as the ``electra`` group (spaCy imports it in ``setup_cli`` once installed)."""
import typer
from typer.testing import CliRunner

from spacy.cli._util import app as spacy_app


def spacy_command() -> typer.Typer:
    """spaCy's app after its ``setup_cli`` has imported our entry point's module."""
    import spacy_electra.spacy_cli  # noqa: F401 (what registry.cli.get_all() does for the entry point)

    typer.main.get_command(spacy_app)  # the command tree builds, as in setup_cli
    return spacy_app


def test_electra_is_a_group_of_spacy_cli_once():
    from spacy_electra.spacy_cli import attach

    spacy_command()
    attach(spacy_app)  # a second import or call adds nothing
    assert [info.name for info in spacy_app.registered_groups].count("electra") == 1


def test_spacy_electra_commands_run_through_spacy_cli():
    runner = CliRunner()
    command = spacy_command()
    listing = runner.invoke(command, ["electra", "--help"])
    assert listing.exit_code == 0, listing.output
    for name in ("convert", "pretrain", "vocab", "annotate", "info", "export"):
        assert name in listing.output
    result = runner.invoke(command, ["electra", "convert", "--help"], prog_name="spacy")
    assert result.exit_code == 0, result.output
    assert "Usage: spacy electra convert" in result.output


def test_known_errors_stay_one_line_under_spacy(tmp_path):
    """The group keeps spacy-electra's one-line errors (cli_errors.OneLineErrors)."""
    result = CliRunner().invoke(spacy_command(), ["electra", "info", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error:") and len(result.output.strip().splitlines()) == 1, result.output
