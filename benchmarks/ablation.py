"""Issue target: ablating every virtual token of a 20-token soft prompt on 02's 72 test clauses in ≤ 60 s.

The workload is 02_legal_clauses' prompt-tuning classifier: SmolLM2-135M, 20 virtual tokens
initialised from the zero-shot question, the 24 clause types' label words, 3 test clauses per type
(the first 32 tokens of each). ``ablate_tokens`` runs once per replacement ("mean", "initial",
"zero") over all 20 tokens, each a label-word evaluation of every clause; the floor is one plain
``evaluate`` of the same model and rows (median of ``repeats`` after a warm-up), so the ratio to
``tokens + 1`` evaluations shows what the ablation adds beyond the evaluations it needs.
"""

from __future__ import annotations

import time
from statistics import median
from typing import Any

from .harness import spread
from .scoring import LEGAL_LABEL_WORDS, fit_to_clause, legal_rows
from .workloads import lm_name

REPLACEMENTS = ("mean", "initial", "zero")


def measure(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pbft_widgets import PromptTemplate, Verbalizer, apply_method, evaluate
    from pbft_widgets.inspection import ablate_tokens, snapshot_prompt
    from pbft_widgets.models import load_model

    torch.manual_seed(0)
    lm = load_model(lm_name(params), device=params["device"])
    rows = legal_rows("test", params["test_per_type"])
    template = fit_to_clause(PromptTemplate(input_template="Clause: {text}", output_indicator="Type:",
                                            target_field="clause_type", style="cloze",
                                            verbalizer=Verbalizer(LEGAL_LABEL_WORDS)), lm.tokenizer)
    model = apply_method(lm.model, "prompt-tuning", tokenizer=lm.tokenizer, template=template,
                         num_virtual_tokens=params["virtual"], init="text",
                         init_text="What kind of licence clause is this?").model
    snapshot_prompt(model)
    with torch.no_grad():  # stands in for training: the learned prompt differs from its start
        model.prompt_encoder["default"].embedding.weight.mul_(1.5)

    def evaluation():
        return evaluate(model, lm.tokenizer, rows, template=template, task_kind="classification")

    evaluation()
    floor = []
    for _ in range(params["repeats"]):
        start = time.perf_counter()
        evaluation()
        floor.append(time.perf_counter() - start)
    seconds = {}
    for kind in REPLACEMENTS:
        start = time.perf_counter()
        table = ablate_tokens(model, lm.tokenizer, template, rows, replacements=[kind])
        seconds[kind] = time.perf_counter() - start
        assert len(table) == params["virtual"]
    per_evaluation = median(floor)
    return {"device": params["device"], "rows": len(rows), "virtual_tokens": params["virtual"],
            "repeats": params["repeats"], "torch_threads": torch.get_num_threads(),
            "prompt_tokens": template.render(rows[0], lm.tokenizer).prompt_tokens,
            "evaluate_seconds": spread(floor), "ablation_seconds": seconds,
            "ratio_to_evaluations": {kind: s / ((params["virtual"] + 1) * per_evaluation) for kind, s in seconds.items()}}
