"""``spacy-electra annotate``: a pipeline over a corpus, streamed, sharded and resumable."""
from .io import AnnotateError
from .records import doc_to_record
from .runner import AnnotateInterrupted, Summary, annotate

__all__ = ["AnnotateError", "AnnotateInterrupted", "Summary", "annotate", "doc_to_record"]
