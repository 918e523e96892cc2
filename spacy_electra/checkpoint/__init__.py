"""Checkpoints in and out: the only package that opens checkpoint files (see ``reader``).

    reader.py     folder or Hub id -> one validated ``Checkpoint`` (config, vocab, weights, heads)
    files.py      bounded reads and safetensors headers: hostile files refused before they cost
    hub.py        Hub ids -> the Hugging Face cache, through huggingface_hub
    hf_names.py   the name table between HF state dicts and ours
    blob.py       the checked encoder blob inside a saved spaCy pipeline
    writer.py     a model as an HF folder, written atomically
    tf_checkpoint.py  Google's TensorFlow ELECTRA checkpoints, read without TensorFlow
    convert_tf.py     `spacy-electra convert-tf`: a TF checkpoint as HF folders
"""
from .errors import CheckpointError
from .reader import Checkpoint, load_checkpoint, read_checkpoint, read_vocabulary, resolve_checkpoint
from .writer import save_checkpoint

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "read_checkpoint", "read_vocabulary", "resolve_checkpoint", "save_checkpoint"]
