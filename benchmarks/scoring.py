"""Issue target: label-word scoring against generate-and-parse on 02_legal_clauses' test clauses.

The workload is the notebook's: the 24 clause types and their label words, 3 test clauses per type
from licences never seen in training (the same seeded sample), the first 32 tokens of each clause,
and two prompts — the zero-shot question that lists the answer words, and the few-shot prompt of
one 6-word solved example per type. Both scorings run on the same model, rows and templates; their
calls alternate (label words, generation, label words, ...) after one warm-up call of each, and
each figure is the median of ``repeats`` timed calls of ``evaluate`` on all rows.
"""

from __future__ import annotations

import random
import time
from statistics import median
from typing import Any

from .harness import spread
from .workloads import lm_name

# cookbook/02_legal_clauses.ipynb's label words: type -> words, the first one trained and listed.
LEGAL_LABEL_WORDS = {
    "definitions": ["definition", "definitions"], "warranty disclaimer": ["warranty", "disclaimer"],
    "limitation of liability": ["liability", "damages"], "termination": ["termination", "terminate"],
    "distribution": ["distribution", "redistribution"], "restrictions": ["restrictions", "restriction"],
    "modifications and derivative works": ["modifications", "derivative"], "grant": ["grant"],
    "ownership": ["ownership", "title"], "governing law": ["law", "jurisdiction"],
    "trademarks": ["trademarks", "trademark"], "support and updates": ["support", "updates"],
    "source code": ["source"], "export control": ["export"], "government rights": ["government"],
    "feedback and contributions": ["feedback", "contributions"], "privacy and data": ["privacy"],
    "assignment": ["assignment", "transfer"], "licence versions": ["versions", "version"],
    "entire agreement": ["entire", "integration"], "confidentiality": ["confidentiality", "confidential"],
    "severability": ["invalid", "severability"], "notices": ["notices", "notice"],
    "attribution and notices": ["attribution"],
}
CLAUSE_TOKENS, DEMO_WORDS = 32, 6


def legal_rows(split: str, per_type: int, seed: int = 0) -> list[dict[str, Any]]:
    """The notebook's seeded, balanced sample of ``split`` (the same rows for the same arguments)."""
    from pbft_widgets.data import load_licence_clauses

    pool = load_licence_clauses(split)
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for clause_type in LEGAL_LABEL_WORDS:
        group = [row for row in pool if row["clause_type"] == clause_type]
        rows += rng.sample(group, min(per_type, len(group)))
    rng.shuffle(rows)
    return rows


def fit_to_clause(template: Any, tokenizer: Any) -> Any:
    """``template`` with the max_length that leaves the clause CLAUSE_TOKENS tokens (the notebook's cut)."""
    frame = template.with_changes(max_length=None).render({"text": "", "clause_type": next(iter(LEGAL_LABEL_WORDS))},
                                                          tokenizer)
    return template.with_changes(max_length=frame.prompt_tokens + frame.completion_tokens + CLAUSE_TOKENS)


def legal_templates(tokenizer: Any) -> dict[str, Any]:
    """The zero-shot question and the few-shot prompt, each sized so the clause keeps CLAUSE_TOKENS tokens."""
    from pbft_widgets.templates import PromptTemplate, Verbalizer

    options = ", ".join(words[0] for words in LEGAL_LABEL_WORDS.values())
    question = PromptTemplate(instruction=f"What kind of licence clause is this? Answer with one word: {options}.",
                              input_template="Clause: {text}", output_indicator="Type:", target_field="clause_type",
                              style="cloze", verbalizer=Verbalizer(LEGAL_LABEL_WORDS))
    train = legal_rows("train", 10)
    demos = [{"text": " ".join(next(r for r in train if r["clause_type"] == t)["text"].split()[:DEMO_WORDS]),
              "clause_type": t} for t in LEGAL_LABEL_WORDS]
    few = question.with_changes(instruction="", demonstrations=demos, demonstration_order="random", seed=0)
    return {"zero-shot": fit_to_clause(question, tokenizer), "few-shot": fit_to_clause(few, tokenizer)}


def measure(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pbft_widgets import evaluate
    from pbft_widgets.models import load_model

    lm = load_model(lm_name(params), device=params["device"])
    rows = legal_rows("test", params["test_per_type"])
    labels = list(LEGAL_LABEL_WORDS)
    out: dict[str, Any] = {"device": params["device"], "rows": len(rows), "repeats": params["repeats"],
                           "torch_threads": torch.get_num_threads(), "prompts": {}}
    for prompt, template in legal_templates(lm.tokenizer).items():
        def run(scoring: str):
            return evaluate(lm.model, lm.tokenizer, rows, template=template, task_kind="classification",
                            scoring=scoring, metric_options={"labels": labels})

        seconds: dict[str, list[float]] = {"label-words": [], "generate": []}
        results = {scoring: run(scoring) for scoring in seconds}  # warm-up; also the scores reported
        for _ in range(params["repeats"]):
            for scoring in seconds:
                start = time.perf_counter()
                run(scoring)
                seconds[scoring].append(time.perf_counter() - start)
        words, generated = results["label-words"], results["generate"]
        out["prompts"][prompt] = {
            "prompt_tokens": template.render(rows[0], lm.tokenizer).prompt_tokens,
            "label_words_seconds": spread(seconds["label-words"]), "generate_seconds": spread(seconds["generate"]),
            "speedup": median(seconds["generate"]) / median(seconds["label-words"]),
            "label_words_accuracy": words.scores["accuracy"], "generate_accuracy": generated.scores["accuracy"],
            "label_words_macro_f1": words.scores["macro_f1"], "generate_macro_f1": generated.scores["macro_f1"],
            "generate_unparsed": generated.scores["unparsed"],
            "label_words_outside_labels": sum(p not in labels for p in words.predictions)}
    return out
