"""spacy-electra: ELECTRA encoders, task heads and RTD pretraining for spaCy."""
__version__ = "0.1.0"
