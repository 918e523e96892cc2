"""A trained ``electra_span_qa`` as a Hugging Face ``ElectraForQuestionAnswering`` folder."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from spacy.language import Language

from ..checkpoint import save_checkpoint
from .architecture import get_module
from .component import ElectraSpanQA


def export_span_qa(pipeline_or_component: Union[Language, ElectraSpanQA], output_dir: Union[str, Path]) -> Path:
    """Write config.json (architectures = ElectraForQuestionAnswering, plus the learned
    ``null_score_diff_threshold``, HF's name for it), model.safetensors (``electra.*`` and
    ``qa_outputs.*``), vocab.txt and tokenizer_config.json. Takes a pipeline (its first
    electra_span_qa) or the component itself."""
    component = pipeline_or_component
    if isinstance(component, Language):
        found = [pipe for _, pipe in component.pipeline if isinstance(pipe, ElectraSpanQA)]
        if not found:
            raise ValueError(f"The pipeline has no electra_span_qa component (pipes: {', '.join(component.pipe_names)}).")
        component = found[0]
    module = get_module(component.model)
    return save_checkpoint(
        module.encoder,
        output_dir,
        vocab=module.wordpiece,
        head_state=module.head_state(),
        config_updates={
            "architectures": ["ElectraForQuestionAnswering"],
            "null_score_diff_threshold": component.null_threshold,
        },
    )
