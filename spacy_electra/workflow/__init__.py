"""Steps of the ``spacy project`` workflow (``project.yml``) that spaCy's own CLI does not cover:
checking the data folder, sampling raw text, the evaluation table, and building and verifying
the installable wheels. Each is a thin ``spacy-electra`` command so ``project.yml`` stays a list
of plain command lines."""
