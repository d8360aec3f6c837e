"""Item 5: inspection cost as ratios to the floor measured in the same process and run.

Neighbours: ``nearest_tokens`` for 100 virtual tokens against the model's vocabulary (SmolLM2's 49,152
tokens, and Gemma-3-270M's 262,144 where it is installed) versus one bare
matmul + top-k on an already-normalised vocabulary of the same shape. Attention: ``prompt_attention``
for a 256-token input versus a plain forward pass of the same input through the same model.
Calls alternate and each figure is the median of ``repeats`` timed calls after one warm-up.
"""

from __future__ import annotations

import time
from statistics import median
from typing import Any

from .harness import spread
from .workloads import lm_name

WORDS = ("the licensee may terminate this agreement upon written notice if the licensor fails to cure a "
         "material breach within thirty days and all rights granted herein shall revert").split()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _input_of(tokenizer, n_tokens: int) -> str:
    text, words = "", 0
    while len(tokenizer(text)["input_ids"]) < n_tokens:
        text = " ".join(WORDS[i % len(WORDS)] for i in range(words))
        words += 1
    ids = tokenizer(text)["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def measure(params: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from pbft_widgets.inspection import nearest_tokens, prompt_attention
    from pbft_widgets.inspection.attention import _forward_inputs
    from pbft_widgets.methods import apply_method
    from pbft_widgets.models import load_model

    device, repeats, k = params["device"], params["repeats"], 5
    torch.manual_seed(0)
    lm = load_model(lm_name(params), device=device)
    setup = apply_method(lm.model, "prompt-tuning", tokenizer=lm.tokenizer, num_virtual_tokens=params["virtual"])
    model, tokenizer = setup.model, lm.tokenizer
    weight = model.get_base_model().get_input_embeddings().weight.detach()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    first_call = _timed(lambda: (nearest_tokens(model, tokenizer, k=k), sync()))
    dtype = torch.float32 if device == "cpu" else weight.dtype
    unit = F.normalize(weight.to(dtype), dim=1)[: len(tokenizer)]
    queries = F.normalize(torch.randn(params["virtual"], weight.shape[1], device=weight.device, dtype=dtype), dim=1)

    def floor_search():
        with torch.no_grad():
            (queries @ unit.T).topk(k, dim=1)
        sync()

    def renormalising_search():
        with torch.no_grad():
            (queries @ F.normalize(weight.to(dtype), dim=1).T).topk(k, dim=1)
        sync()

    ours_n, floor_n, renorm_n = [], [], []
    floor_search(), nearest_tokens(model, tokenizer, k=k), renormalising_search()
    for _ in range(repeats):
        floor_n.append(_timed(floor_search))
        ours_n.append(_timed(lambda: (nearest_tokens(model, tokenizer, k=k), sync())))
        renorm_n.append(_timed(renormalising_search))

    text = _input_of(tokenizer, params["tokens"])
    encoding = tokenizer(text, return_tensors="pt")
    inputs = _forward_inputs(model, encoding)
    inputs.pop("logits_to_keep", None)  # the plain forward is the model's ordinary call

    def plain_forward():
        with torch.no_grad():
            model(**inputs)
        sync()

    model.eval()
    ours_a, base_a, floor_a = [], [], []
    plain_forward(), prompt_attention(model, tokenizer, text, compare_base=False)
    for _ in range(repeats):
        floor_a.append(_timed(plain_forward))
        ours_a.append(_timed(lambda: (prompt_attention(model, tokenizer, text, compare_base=False), sync())))
        base_a.append(_timed(lambda: (prompt_attention(model, tokenizer, text, compare_base=True), sync())))
    return {"device": device, "model": lm_name(params), "vocabulary": list(unit.shape), "virtual_tokens": params["virtual"], "k": k,
            "input_tokens": int(encoding["input_ids"].shape[1]), "repeats": repeats,
            "torch_threads": torch.get_num_threads(),
            "neighbours_seconds": spread(ours_n), "neighbours_floor_seconds": spread(floor_n),
            "neighbours_renormalising_seconds": spread(renorm_n), "neighbours_first_call_seconds": first_call,
            "neighbours_ratio": median(ours_n) / median(floor_n),
            "attention_seconds": spread(ours_a), "attention_with_base_seconds": spread(base_a),
            "forward_seconds": spread(floor_a), "attention_ratio": median(ours_a) / median(floor_a),
            "attention_with_base_ratio": median(base_a) / median(floor_a)}
