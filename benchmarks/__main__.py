"""``python -m benchmarks run|report``: measure the suites, or regenerate the markdown from JSON.

    python -m benchmarks run [--suite matrix,baseline,qlora,ner,inspection,scoring,ablation] [--device cpu|cuda]
                             [--ncbi-dir DIR] [--out benchmarks/results] [--smoke]
    python -m benchmarks report [--out benchmarks/results]

Full runs are slow and made by hand, with nothing else heavy running so timings are honest;
``--smoke`` builds tiny random models and runs every suite for a step or two (what CI checks).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from . import report, suites
from .harness import REPO, machine, run_child, stamp

DEFAULT_OUT = REPO / "benchmarks" / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure suites in child processes and write JSON + markdown")
    run.add_argument("--suite", default=",".join(suites.SUITES),
                     help=f"comma-separated subset of {','.join(suites.SUITES)} (default: all)")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    run.add_argument("--ncbi-dir", default=None, help="NCBI-disease folder with train.tsv and devel.tsv "
                     "(the ner suite needs it, except in smoke runs)")
    run.add_argument("--out", default=None, help=f"results folder (default {DEFAULT_OUT.relative_to(REPO)}; "
                     "smoke runs default to a temporary folder)")
    run.add_argument("--smoke", action="store_true", help="tiny random models, a step or two: checks the plumbing")
    run.add_argument("--clauses", default=None, help="clause pools exported with `export-clauses` (for a "
                     "machine without licensedcode-data)")
    run.add_argument("--methods", default=None, help="comma-separated subset of the matrix's methods")
    run.add_argument("--steps", type=int, default=None, help="training steps per run of matrix/baseline/qlora "
                     "(default: each suite's own budget)")
    run.add_argument("--repeats", type=int, default=None, help="runs per path for baseline/qlora (default 3)")
    run.add_argument("--ner-epochs", type=int, default=None, help="epochs per NER variant (full run default 3)")
    run.add_argument("--ner-steps", type=int, default=None, help="a fixed step budget per NER variant instead")
    exp = sub.add_parser("export-clauses", help="write the clause pools to a JSON file (see run --clauses)")
    exp.add_argument("path")
    rep = sub.add_parser("report", help="regenerate the markdown tables from the JSON results")
    rep.add_argument("--out", default=str(DEFAULT_OUT))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        if not any(Path(args.out).glob("*.json")):
            raise SystemExit(f"no results in {args.out}: run `python -m benchmarks run ...` first, or pass the "
                             "--out folder it wrote to")
        written = report.write(Path(args.out), **_readmes_for(Path(args.out)))
        print("\n".join(str(p) for p in written))
        return 0
    if args.command == "export-clauses":
        from .workloads import export_clauses

        export_clauses(args.path)
        return 0
    chosen = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(suites.SUITES))
    if unknown:
        raise SystemExit(f"unknown suite(s) {unknown}; choose from {','.join(suites.SUITES)}")
    if "ner" in chosen and not args.ncbi_dir and not args.smoke:
        raise SystemExit("the ner suite needs --ncbi-dir DIR (a folder with NCBI-disease train.tsv/devel.tsv); "
                         "drop ner from --suite to run the others")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device visible: nothing to measure on cuda (skipped)")
            return 0
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="pbft-bench-smoke-")) if args.smoke
                                           else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    common: dict = {"device": args.device, "ncbi_dir": args.ncbi_dir,
                    "clauses": str(Path(args.clauses).resolve()) if args.clauses else None}
    if args.smoke:
        from .workloads import tiny_models

        models = tiny_models(tempfile.mkdtemp(prefix="pbft-bench-tiny-"))
        common.update({"causal_lm": models["causal_lm"], "encoder": models["encoder"]})
    info = machine(args.device)
    for suite in chosen:
        budget = dict((suites.SMOKE if args.smoke else suites.FULL)[suite])
        if suite == "ner":
            budget["epochs"] = args.ner_epochs or budget["epochs"]
            budget["steps"] = args.ner_steps or budget["steps"]
        if args.steps and suite in ("matrix", "baseline", "qlora"):
            budget["steps"] = args.steps
        if args.repeats and suite in ("baseline", "qlora"):
            budget["repeats"] = args.repeats
        if suite == "matrix" and args.methods:
            budget["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
        plan = suites.plan(suite, budget, common)
        started = time.perf_counter()
        cases = []
        for i, params in enumerate(plan.cases, 1):
            label = params.get("method") or params.get("path") or params.get("variant") or suite
            print(f"[{suite} {i}/{len(plan.cases)}] {label} ...", flush=True)
            cases.append(run_child(suite, params))
        payload = {"suite": suite, "device": args.device, "smoke": args.smoke, **stamp(command),
                   "machine": info, "budget": budget, "ncbi_dir": Path(args.ncbi_dir).name if args.ncbi_dir else None,
                   "wall_seconds": time.perf_counter() - started, "cases": cases, "summary": plan.summarise(cases)}
        path = out / f"{suite}-{args.device}.json"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=1, default=str))
        os.replace(tmp, path)
        print(f"wrote {path}")
    for path in report.write(out, **_readmes_for(out)):
        print(f"wrote {path}")
    return 0


def _readmes_for(out: Path) -> dict[str, Path | None]:
    """The READMEs' generated blocks are rewritten only from the committed results folder."""
    committed = out.resolve() == DEFAULT_OUT.resolve()
    return {"readme": REPO / "benchmarks" / "README.md" if committed else None,
            "project_readme": REPO / "README.md" if committed else None}


if __name__ == "__main__":
    sys.exit(main())
