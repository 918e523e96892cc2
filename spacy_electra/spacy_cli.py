"""``spacy electra ...``: the ``spacy-electra`` commands as a group of spaCy's own CLI.

spaCy imports every ``spacy_cli`` entry point before it builds its command tree
(``spacy.cli._util.setup_cli`` calls ``registry.cli.get_all()``), so the entry point
``electra = spacy_electra.spacy_cli:app`` in setup.cfg only has to import this module, which adds
our Typer app to spaCy's under the name ``electra``. ``spacy-electra`` and
``python -m spacy_electra`` stay as they are. The import costs about 40 ms over spaCy's CLI: torch
is already loaded by then (spaCy imports it through thinc), and the commands import the rest
when they run.
"""
from __future__ import annotations

import typer

from .cli import app

GROUP = "electra"


def attach(parent: typer.Typer) -> typer.Typer:
    """Add our commands to ``parent`` (spaCy's app) as the ``electra`` group, once."""
    if not any(info.name == GROUP for info in parent.registered_groups):
        parent.add_typer(app, name=GROUP, help="ELECTRA for spaCy: checkpoints, conversion, pretraining, annotation (spacy-electra).")
    return app


def _attach_to_spacy() -> None:
    from spacy.cli._util import app as spacy_app

    attach(spacy_app)


_attach_to_spacy()
