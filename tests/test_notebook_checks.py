"""The checks notebooks make on their own results fail when the result is wrong, not only when code crashes."""

from __future__ import annotations

import math

import pytest
import torch

from pbft_widgets import ConfigError, DataError, TemplateError, Verbalizer
from pbft_widgets import models
from pbft_widgets.notebook_checks import check_losses, check_predictions, expect_error


def test_expect_error_prints_the_expected_error(capsys):
    with expect_error(TemplateError):
        Verbalizer({"a": ["yes"], "b": ["yes"]})
    assert capsys.readouterr().out.startswith("TemplateError: label word 'yes' is used by labels 'a' and 'b'")


def test_expect_error_fails_when_nothing_is_raised():
    with pytest.raises(AssertionError, match="expected DataError or ConfigError, but the block raised nothing"):
        with expect_error(DataError, ConfigError):
            Verbalizer({"a": ["yes"], "b": ["no"]})


def test_expect_error_lets_another_error_through():
    with pytest.raises(TemplateError):
        with expect_error(DataError):
            Verbalizer({"a": ["yes"], "b": ["yes"]})


def test_check_losses_accepts_a_falling_finite_run():
    check_losses([(1, 3.0), (2, 2.0), (3, 2.5), (4, 1.0)], "run")


@pytest.mark.parametrize("losses, message", [
    ([], "no training loss"),
    ([(1, 2.0), (2, math.nan)], "not finite"),
    ([(1, 2.0), (2, 1.0), (3, 2.0)], "did not fall"),
])
def test_check_losses_fails_on_a_broken_run(losses, message):
    with pytest.raises(AssertionError, match=message):
        check_losses(losses, "lora")


def test_check_predictions_checks_labels_and_tags():
    check_predictions(["a", "b"], {"a", "b"})
    check_predictions([["O", "B-X"], []], {"O", "B-X", "I-X"})
    with pytest.raises(AssertionError, match=r"\['c'\]"):
        check_predictions(["a", "c"], {"a", "b"})
    with pytest.raises(AssertionError, match="B-Y"):
        check_predictions([["O"], ["B-Y"]], {"O", "B-X"})


def test_runtime_summary_names_the_path_taken(monkeypatch):
    assert models.runtime_summary().startswith("cpu, float32 (no CUDA GPU visible)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert models.runtime_summary() == "cuda:0 (Tesla T4), float16 (this GPU has no bf16)"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert models.runtime_summary() == "cuda:0 (NVIDIA H100), bfloat16"
