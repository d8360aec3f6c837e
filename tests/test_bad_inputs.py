"""Every bad input in the catalogue raises its own PbftError subclass with a message naming the fix."""

from __future__ import annotations

import pytest

import bad_inputs
import make_error_catalogue
from pbft_widgets.errors import PbftError


@pytest.mark.parametrize("case", bad_inputs.CASES, ids=[case.id for case in bad_inputs.CASES])
def test_bad_input_raises_its_error_naming_the_fix(case):
    result = bad_inputs.outcome(case.id)
    assert result.error is not None, f"{case.what}: no error was raised"
    assert type(result.error) is case.error, f"{case.what}: {type(result.error).__name__}: {result.error}"
    assert isinstance(result.error, PbftError)
    assert case.fix in str(result.error), f"the message does not name the fix {case.fix!r}: {result.error}"
    for phrase in case.says:
        assert phrase in str(result.error), f"the message does not say {phrase!r}: {result.error}"
    if case.max_seconds is not None:
        assert result.seconds < case.max_seconds, f"took {result.seconds:.1f} s (limit {case.max_seconds} s)"


def test_the_catalogue_is_large_and_each_case_is_named_once():
    ids = [case.id for case in bad_inputs.CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)


def test_the_docs_table_is_what_the_cases_raise_now():
    expected = make_error_catalogue.render()
    assert make_error_catalogue.DOC.is_file(), "run python tests/make_error_catalogue.py"
    assert make_error_catalogue.DOC.read_text(encoding="utf-8") == expected, (
        "docs/error-catalogue.md is stale; run python tests/make_error_catalogue.py")
