"""The public API documents itself: every public name has a docstring, and the entry points a
notebook uses document every argument, what they return, and an example that really runs.

The examples run as doctests on the embedded models (the real ones a reader would use), each in
an empty working folder, so what the docstrings show is what the code does today.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import os
import re
from pathlib import Path

import pytest

import pbft_widgets
from pbft_widgets import (AdapterBank, apply_method, calibrate, compare, evaluate, export_recipe, load_adapter,
                          load_model, over_seeds, save_adapter, train)
from pbft_widgets.calibration import contextual_calibration
from pbft_widgets.composition import ensemble, prompt_soup, start_from
from pbft_widgets.evaluation import label_word_metric
from pbft_widgets.models import runtime_summary
from pbft_widgets.notebook_checks import check_losses, check_predictions, expect_error
from pbft_widgets.inspection import (ablate_layers, ablate_tokens, discretise, faithfulness, replaced_prefix_layer,
                                     replaced_prompt)
from pbft_widgets.probability_metrics import probability_scores
from pbft_widgets.robustness import perturb, spread
from pbft_widgets.scoring import score_label_words
from pbft_widgets.sweep_figures import sweep_figure
from pbft_widgets.sweeps import Sweep, grid
from pbft_widgets.uncertainty import accuracy_differences, mean_differences, paired_bootstrap

PACKAGE = Path(pbft_widgets.__file__).parent
ENTRY_POINTS = [load_model, apply_method, train, evaluate, save_adapter, load_adapter, AdapterBank, export_recipe,
                score_label_words, contextual_calibration, calibrate, probability_scores, compare, paired_bootstrap,
                over_seeds, label_word_metric, grid, Sweep, sweep_figure, start_from, prompt_soup, ensemble, perturb,
                spread, discretise, replaced_prompt, faithfulness, ablate_tokens, accuracy_differences, mean_differences,
                ablate_layers, replaced_prefix_layer, runtime_summary, expect_error, check_losses, check_predictions]


def _public_definitions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack = [(node, "") for node in tree.body]
        while stack:
            node, owner = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {owner}{node.name}", node
                if isinstance(node, ast.ClassDef):
                    stack += [(child, f"{node.name}.") for child in node.body]


def test_every_public_function_and_class_has_a_docstring():
    missing = [where for where, node in _public_definitions() if not ast.get_docstring(node)]
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_no_name_in_the_package_root_shadows_a_submodule():
    submodules = {path.stem for path in PACKAGE.glob("*.py")} | {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert not submodules & set(pbft_widgets.__all__)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=[entry.__name__ for entry in ENTRY_POINTS])
def test_entry_points_document_every_argument_the_return_and_an_example(entry):
    doc = inspect.getdoc(entry)
    assert re.search(r"^Args:$", doc, re.M) and re.search(r"^Example:$", doc, re.M), entry.__name__
    if not inspect.isclass(entry):
        assert re.search(r"^Returns:$", doc, re.M), entry.__name__
    args = doc.split("Args:", 1)[1].split("Returns:", 1)[0].split("Example:", 1)[0]
    heads = [re.split(r" \(|:", line.strip(), maxsplit=1)[0] for line in args.splitlines()
             if line.startswith("    ") and not line.startswith("     ")]
    documented = {name.strip().lstrip("*") for head in heads for name in head.split(",")}
    signature = inspect.signature(entry.__init__ if inspect.isclass(entry) else entry)
    names = {name for name in signature.parameters if name != "self"}
    assert names <= documented, f"{entry.__name__} does not document {sorted(names - documented)}"


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=[entry.__name__ for entry in ENTRY_POINTS])
def test_the_examples_run_as_written(entry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write adapters/, runs/, recipes/ relative to where they run
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [test for test in finder.find(entry, entry.__name__, globs={}) if test.examples]
    assert tests, f"{entry.__name__} has no runnable example"
    for test in tests:
        runner.run(test, out=lambda text: print(text, end=""))
    assert runner.tries == sum(len(test.examples) for test in tests)
    assert runner.failures == 0, f"{entry.__name__}: {runner.failures} example line(s) gave other output"
    assert os.getcwd() == str(tmp_path)
