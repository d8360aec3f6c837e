"""Bad predictions and references given to the metrics."""

from __future__ import annotations

from .bench import Case

CASES: list[Case] = []
