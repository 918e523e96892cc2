"""Learning-rate schedules sized to the run.

spaCy's stock ``warmup_linear.v1`` takes warmup and total steps as absolute numbers, so a config
written for one run length silently mis-fits every other one (``warmup_steps = 250`` of a
378-step run is two thirds warmup). Here the run length is read from one place
(``total_steps = ${training.max_steps}`` in the shipped configs) and warmup is a fraction of it,
so ``--training.max_steps 600`` on the command line keeps the shape: peak at the warmup
fraction, zero at the last step.
"""
from typing import Iterator, Union

from thinc.api import registry


@registry.schedules("spacy_electra.warmup_linear.v1")
def warmup_linear_fraction(
    *, initial_rate: float, total_steps: Union[int, str], warmup_fraction: float = 0.1
) -> Iterator[float]:
    """Linear warmup to ``initial_rate`` over the first ``warmup_fraction`` of ``total_steps``,
    then linear decay to zero at ``total_steps`` (ELECTRA's fine-tuning recipe: 10% warmup).

    spaCy's ``nlp.initialize()`` builds its default optimizer from the config *without*
    interpolating it, so ``total_steps`` can arrive as the text ``"${training.max_steps}"``
    (``spacy debug data`` does this). Such a schedule yields its step-0 value (0.0) and fails
    with a clear error only if training actually draws a second value."""
    if isinstance(total_steps, str):
        yield 0.0
        raise ValueError(
            f"total_steps={total_steps!r} was never interpolated: load the config with "
            "interpolate=True (spacy train does), or pass an optimizer built from the interpolated config."
        )
    if total_steps < 1:
        raise ValueError(
            f"total_steps={total_steps}: the schedule needs the run length. Set [training] max_steps "
            "(the shipped configs read total_steps from it), e.g. --training.max_steps 1000."
        )
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction={warmup_fraction} must be in [0, 1); ELECTRA uses 0.1.")
    warmup = warmup_fraction * total_steps
    step = 0
    while True:
        if step < warmup:
            factor = (step + 1) / warmup
        else:
            factor = max(0.0, (total_steps - step) / max(1.0, total_steps - warmup))
        yield factor * initial_rate
        step += 1
