"""One measurement in a fresh interpreter: ``python -m benchmarks.child SUITE PARAMS_JSON OUT``."""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path

from .harness import peak_rss


def main(argv: list[str]) -> None:
    suite, params, out = argv
    warnings.filterwarnings("ignore")
    module = importlib.import_module(f"benchmarks.{suite}")
    result = module.measure(json.loads(params))
    result.setdefault("peak_rss_bytes", peak_rss())
    target = Path(out)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, target)


if __name__ == "__main__":
    main(sys.argv[1:])
