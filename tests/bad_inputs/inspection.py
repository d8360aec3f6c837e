"""Bad calls to the inspection helpers and their checkpoints."""

from __future__ import annotations

from .bench import Case

CASES: list[Case] = []
