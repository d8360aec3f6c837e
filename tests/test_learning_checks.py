"""Is it learning? The warnings read from a run's events: each check fires on the case it names and not on a healthy run."""

from __future__ import annotations

import pytest

from pbft_widgets.events import TrainEvent
from pbft_widgets.learning_checks import learning_rate_warning, learning_warnings
from pbft_widgets.registry import spec_of


def logs(losses, drift=0.1, grad=1.0):
    return [TrainEvent("log", step, 100, loss=loss, grad_norm=grad, relative_drift=drift)
            for step, loss in enumerate(losses, start=1)]


def evals(accuracies, losses=None):
    losses = losses or [1.0 - a for a in accuracies]
    return [TrainEvent("eval", 10 * (i + 1), 100, loss=loss, metrics={"accuracy": a, "loss": loss})
            for i, (a, loss) in enumerate(zip(accuracies, losses))]


def test_a_healthy_run_gets_no_warning():
    history = logs([3.0 - 0.05 * i for i in range(30)]) + evals([0.3, 0.4, 0.5])
    assert learning_warnings(history, spec_of("prompt-tuning"), learning_rate=3e-2) == []


@pytest.mark.parametrize("method, rate, says", [
    ("prompt-tuning", 1e-3, "far below the usual range"),  # a LoRA rate for a soft prompt
    ("lora", 3e-2, "far above the usual range"),  # a prompt rate for LoRA
])
def test_a_learning_rate_far_from_the_methods_range_is_named(method, rate, says):
    warning = learning_rate_warning(spec_of(method), rate)
    assert says in warning and f"try {spec_of(method).training.learning_rate:g}" in warning


@pytest.mark.parametrize("rate", [3e-2, 1e-1, 1.5e-2])  # inside, at the edge, within the factor of 3
def test_rates_near_the_range_pass(rate):
    assert learning_rate_warning(spec_of("prompt-tuning"), rate) is None


def test_flat_validation_scores_are_reported_with_their_steps():
    warnings = learning_warnings(evals([0.25, 0.25, 0.255], losses=[1.2, 1.2, 1.2]))
    assert any("validation accuracy has not changed over the last 3 evaluations (steps 10-30" in w for w in warnings)
    assert any("validation loss has not changed" in w for w in warnings)
    assert learning_warnings(evals([0.25, 0.25])) == []  # two evaluations are not yet a plateau


def test_a_flat_training_loss_is_reported_but_a_falling_one_is_not():
    assert any("training loss is flat" in w for w in learning_warnings(logs([2.0, 2.01] * 10)))
    assert not learning_warnings(logs([2.0 - 0.02 * i for i in range(20)]))


def test_weights_that_do_not_move_and_a_zero_gradient_are_reported():
    still = learning_warnings(logs([3.0 - 0.05 * i for i in range(12)], drift=1e-5))
    assert any("trainable weights moved 1.0e-05" in w for w in still)
    zero = learning_warnings(logs([3.0, 2.9, 2.8], grad=0.0))
    assert any("the gradient is zero" in w for w in zero)
