"""The data and models every suite shares: licence-clause typing on SmolLM2, NER on MiniLM.

The clause task is the quickstart's (four clause types, each clause cut to its first 24 words,
answered with one label word), so benchmark numbers read next to the notebook's.
In smoke mode the models are tiny random ones built from a config with the real tokenizers, so
the entry point runs end to end in seconds.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

LABEL_WORDS = {
    "definitions": ["definition", "definitions"],
    "warranty disclaimer": ["warranty", "disclaimer"],
    "limitation of liability": ["liability", "limitation"],
    "termination": ["termination", "terminate"],
}
FIRST_WORDS = 24
CAUSAL_LM = "smollm2-135m-instruct"
MULTILINGUAL_LM = "gemma3-270m"  # optional (`make multilingual`): measured where installed
ENCODER = "minilm-l6"


def clause_pool(split: str) -> list[dict[str, str]]:
    """Every clause of the four types in ``split`` of the ScanCode licence texts."""
    from pbft_widgets.data import load_licence_clauses

    return [{"text": row["text"], "clause_type": row["clause_type"]} for row in load_licence_clauses(split)
            if row["clause_type"] in LABEL_WORDS]


def export_clauses(path: str) -> None:
    """Write the clause pools to JSON, for machines without licensedcode-data (``--clauses FILE``)."""
    pools = {split: clause_pool(split) for split in ("train", "validation", "test")}
    Path(path).write_text(json.dumps(pools))


def clause_rows(split: str, per_type: int, seed: int = 0, source: str | None = None) -> list[dict[str, str]]:
    """A seeded, balanced sample of the four clause types (from ``source``, a JSON export, if given)."""
    pool = json.loads(Path(source).read_text())[split] if source else clause_pool(split)
    rng = random.Random(seed)
    rows = []
    for clause_type in LABEL_WORDS:
        group = [row for row in pool if row["clause_type"] == clause_type]
        rng.shuffle(group)
        rows += [{"text": " ".join(row["text"].split()[:FIRST_WORDS]), "label": clause_type}
                 for row in group[:per_type]]
    rng.shuffle(rows)
    return rows


def clause_template():
    from pbft_widgets.templates import PromptTemplate, Verbalizer

    return PromptTemplate(instruction="Clause type: definition, warranty, liability or termination?",
                          input_template="Clause: {text}", output_indicator="Type:", style="cloze",
                          verbalizer=Verbalizer(LABEL_WORDS))


def ner_rows(ncbi_dir: str | None, split: str) -> list[dict[str, list[str]]]:
    """NCBI-disease rows from ``ncbi_dir``; without one (smoke runs), the project's clinical sample."""
    from pbft_widgets.data import load_clinical_sample, load_ncbi_disease

    if ncbi_dir:
        return load_ncbi_disease(split, data_dir=ncbi_dir)
    return load_clinical_sample(split)


def tiny_models(root: str | None = None) -> dict[str, str]:
    """Save a tiny random Llama (SmolLM2 vocabulary) and a tiny BERT (MiniLM vocabulary) to folders."""
    import torch
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from pbft_widgets.models import load_tokenizer

    base = Path(root or tempfile.mkdtemp(prefix="pbft-bench-tiny-"))
    torch.manual_seed(0)
    smol = load_tokenizer(CAUSAL_LM)
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(smol), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=smol.pad_token_id, eos_token_id=smol.eos_token_id, bos_token_id=smol.bos_token_id))
    llama.save_pretrained(base / "causal")
    smol.save_pretrained(base / "causal")
    bert_tok = load_tokenizer(ENCODER)
    bert = BertModel(BertConfig(vocab_size=len(bert_tok), hidden_size=32, intermediate_size=64,
                                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512))
    bert.save_pretrained(base / "encoder")
    bert_tok.save_pretrained(base / "encoder")
    return {"causal_lm": str(base / "causal"), "encoder": str(base / "encoder")}


def lm_name(params: dict[str, Any]) -> str:
    return params.get("causal_lm") or CAUSAL_LM


def encoder_name(params: dict[str, Any]) -> str:
    return params.get("encoder") or ENCODER
