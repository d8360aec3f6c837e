"""Bad calls to evaluate(), generate_texts() and compare()."""

from __future__ import annotations

from .bench import Case

CASES: list[Case] = []
