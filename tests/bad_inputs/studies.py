"""Bad calls to the method-study helpers: sweeps, prompt transfer and composition, robustness."""

from __future__ import annotations

from pbft_widgets import errors as E

from .bench import Bench, Case, small_options


def _sweep(bench: Bench, run=lambda params, seed: {"score": 1.0}, **options):
    from pbft_widgets.sweeps import Sweep

    return Sweep(f"bad-{len(options)}-{id(run)}", run, storage=bench.path("sweeps.db"),
                 **{"objective": "score", "progress": False, **options})


def _sweep_run(cells, seeds=(0, 1), run=lambda params, seed: {"score": 1.0}):
    return lambda bench: _sweep(bench, run).run(cells, seeds=seeds)


def _prompt_model(bench: Bench, method: str = "prompt-tuning", **options):
    from pbft_widgets import apply_method

    return apply_method(bench.lm(), method, tokenizer=bench.tokenizer, **(options or small_options(method))).model


def _start_from_shape(bench: Bench):
    import torch

    from pbft_widgets.composition import start_from

    model = _prompt_model(bench, num_virtual_tokens=4)
    return start_from(model, torch.zeros(2, model.word_embeddings.weight.shape[1]))


def _start_from_p_tuning(bench: Bench):
    import torch

    from pbft_widgets.composition import start_from

    return start_from(_prompt_model(bench, "p-tuning"), torch.zeros(4, 64))


def _soup_shapes(bench: Bench):
    import torch

    from pbft_widgets.composition import prompt_soup

    return prompt_soup([torch.zeros(4, 64), torch.zeros(5, 64)])


def _result(name: str, references, probabilities=((0.6, 0.4),)):
    from pbft_widgets.evaluation import EvalResult

    return EvalResult(name, "classification", {}, ["x"] * len(references), list(references), ["row"] * len(references),
                      0.0, probabilities=[list(p) for p in probabilities] if probabilities else None, labels=["x", "y"])


def _ensemble(*results):
    def run(bench: Bench):
        from pbft_widgets.composition import ensemble

        return ensemble(list(results))
    return run


def _perturb(kind="typos", **options):
    def run(bench: Bench):
        from pbft_widgets.robustness import perturb

        return perturb([{"text": "The licensor grants you a licence", "label": "grant"}], kind, **options)
    return run


CASES = [
    Case("grid-empty-axis", "studies", "grid(tokens=[]) with no values on an axis", E.ConfigError,
         "give at least one", lambda bench: __import__("pbft_widgets.sweeps").sweeps.grid(tokens=[]),
         says=("axis 'tokens' has no values",)),
    Case("sweep-object-parameter", "studies", "a sweep cell whose parameter is a list (layers=[1, 2])",
         E.ConfigError, "name the object instead", _sweep_run([{"layers": [1, 2]}]), says=("layers=[1, 2]",)),
    Case("sweep-seed-parameter", "studies", "'seed' given as a cell parameter", E.ConfigError,
         "pass seeds=[...]", _sweep_run([{"seed": 3}])),
    Case("sweep-duplicate-seeds", "studies", "seeds=(0, 0)", E.ConfigError, "give distinct integers",
         _sweep_run([{"x": 1}], seeds=(0, 0))),
    Case("sweep-missing-objective", "studies", "a cell function that does not return the objective",
         E.ConfigError, "must return a finite number under the objective's name",
         _sweep_run([{"x": 1}], run=lambda params, seed: {"accuracy": 0.5}), says=("returned ['accuracy']",)),
    Case("sweep-unstorable-scores", "studies", "a cell function returning a tensor among its scores",
         E.ConfigError, "must be JSON-serialisable",
         _sweep_run([{"x": 2}], run=lambda params, seed: {"score": 1.0, "model": object()})),
    Case("sweep-bad-direction", "studies", "Sweep(..., direction='up')", E.ConfigError,
         "use 'maximize' or 'minimize'", lambda bench: _sweep(bench, direction="up")),
    Case("sweep-summary-unknown-metric", "studies", "summary('f1') of a sweep whose cells returned 'score'",
         E.ConfigError, "no score 'f1'",
         lambda bench: _sweep(bench).run([{"x": 3}], seeds=(0,)).summary("f1")),
    Case("sweep-figure-unknown-axis", "studies", "sweep_figure(..., x='rank') for a parameter the sweep lacks",
         E.ConfigError, "use one of ['x']",
         lambda bench: __import__("pbft_widgets.sweep_figures").sweep_figures.sweep_figure(
             _sweep(bench).run([{"x": 4}], seeds=(0,)), "score", "rank")),
    Case("start-from-wrong-shape", "studies", "start_from() with a 2-token prompt on a 4-token model",
         E.ConfigError, "num_virtual_tokens=2", _start_from_shape, says=("(2, 64)", "(4, 64)")),
    Case("start-from-p-tuning", "studies", "start_from() on a P-tuning model (its prompt comes from an encoder)",
         E.ConfigError, "transfer with method='prompt-tuning'", _start_from_p_tuning),
    Case("soup-different-shapes", "studies", "prompt_soup() of prompts with 4 and 5 virtual tokens",
         E.ConfigError, "same num_virtual_tokens", _soup_shapes),
    Case("ensemble-generated-results", "studies", "ensemble() of evaluations scored by generation",
         E.DataError, "evaluate with label-word scoring",
         _ensemble(_result("a", ["x"], None), _result("b", ["x"], None))),
    Case("ensemble-different-rows", "studies", "ensemble() of evaluations of different rows",
         E.DataError, "evaluate every member on one list of rows",
         _ensemble(_result("a", ["x"]), _result("b", ["y"]))),
    Case("perturb-unknown-kind", "studies", "perturb(rows, 'shuffle')", E.ConfigError,
         "use one of upper, lower, whitespace, typos", _perturb("shuffle")),
    Case("perturb-bad-rate", "studies", "perturb(rows, 'typos', rate=5)", E.ConfigError,
         "give a probability in (0, 1]", _perturb(rate=5)),
    Case("perturb-missing-field", "studies", "perturb(rows, 'upper', field='clause') for rows without it",
         E.DataError, "pass field='<the column holding the input>'", _perturb("upper", field="clause")),
]
