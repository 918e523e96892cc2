"""``python -m spacy_electra.pretrain pretrain|vocab ...``: the pretraining commands alone, without
the rest of the command line's imports (spaCy), so torchrun can launch them where only torch is
installed."""
import typer

from ..cli_errors import OneLineErrors, verbose_option
from .commands import OVERRIDE_SETTINGS, pretrain_command, vocab_command

app = typer.Typer(name="spacy-electra-pretrain", help="ELECTRA pretraining and WordPiece vocabularies.",
                  add_completion=False, no_args_is_help=True, cls=OneLineErrors)
app.callback()(verbose_option)
app.command("pretrain", context_settings=OVERRIDE_SETTINGS)(pretrain_command)
app.command("vocab")(vocab_command)

if __name__ == "__main__":
    app()
