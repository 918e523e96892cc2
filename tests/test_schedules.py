"""Every shipped fine-tuning config sizes its learning-rate schedule from [training] max_steps."""
from pathlib import Path

import pytest
from spacy.util import load_config, registry

CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "configs").glob("*.cfg")
                 if not p.name.startswith(("pretrain_", "assemble", "distill")))


def rates(config_path, overrides):
    config = load_config(config_path, overrides=overrides, interpolate=True)
    schedule = registry.resolve({"lr": config["training"]["optimizer"]["learn_rate"]})["lr"]
    n = config["training"]["max_steps"]
    peak = config["training"]["optimizer"]["learn_rate"]["initial_rate"]
    return [next(schedule) for _ in range(n)], n, peak


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("steps", [None, 150, 3000])
def test_schedule_peaks_at_the_warmup_fraction_and_ends_near_zero(path, steps):
    overrides = {} if steps is None else {"training.max_steps": steps}
    values, n, peak = rates(path, overrides)
    assert steps is None or n == steps
    top = max(range(n), key=values.__getitem__)
    assert abs(top - 0.1 * n) <= 1, f"peak at step {top} of {n}"
    assert values[top] == pytest.approx(peak)
    assert values[-1] <= 0.02 * peak
    assert values[0] < 0.2 * peak
    config = load_config(path, interpolate=True)
    assert config["training"]["max_epochs"] == 0  # the length is max_steps, in one place
    assert config["training"]["logger"]["progress_bar"] is True


def test_schedule_refuses_a_run_without_length():
    from spacy_electra.schedules import warmup_linear_fraction

    with pytest.raises(ValueError, match="max_steps"):
        next(warmup_linear_fraction(initial_rate=1e-3, total_steps=0))


def test_uninterpolated_length_initializes_but_refuses_to_train():
    """nlp.initialize() resolves the optimizer from the raw config (spacy debug data does): the
    schedule must build, and fail clearly only if a training step draws from it."""
    from spacy_electra.schedules import warmup_linear_fraction

    schedule = warmup_linear_fraction(initial_rate=1e-3, total_steps="${training.max_steps}")
    assert next(schedule) == 0.0
    with pytest.raises(ValueError, match="interpolate"):
        next(schedule)
