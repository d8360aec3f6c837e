"""Loaders for the cookbook's data: each returns plain rows (a list of dicts), seeded and split by group.

* clinical NER / NCBI-disease: `conll` (token + IOB2 tag files)
* code docstrings: `docstrings` (the Python standard library)
* legal clauses: `licences` (the ScanCode licence database)
* low-resource translation: `translation` (the elotl Spanish-Nahuatl / Spanish-Otomí corpora)
* a user's own rows: `jsonl`

`to_dataset(rows)` (or `to_ner_dataset` for tagged tokens) turns rows into a `datasets.Dataset`.
"""

from ._io import to_dataset
from .conll import (clinical_sample_dir, label_list, load_clinical_sample, load_ncbi_disease, read_conll,
                    read_conll_documents, to_ner_dataset, validate_tags, write_conll, write_conll_documents)
from .docstrings import first_sentence, load_stdlib_docstrings
from .jsonl import read_jsonl, write_jsonl
from .licences import CLAUSE_RULES, classify_heading, clause_type_counts, load_licence_clauses
from .splits import SPLITS
from .translation import dialect_mix, load_translation_pairs

__all__ = [
    "CLAUSE_RULES", "SPLITS", "classify_heading", "clause_type_counts", "clinical_sample_dir", "dialect_mix",
    "first_sentence", "label_list", "load_clinical_sample", "load_licence_clauses", "load_ncbi_disease",
    "load_stdlib_docstrings", "load_translation_pairs", "read_conll", "read_conll_documents", "read_jsonl",
    "to_dataset", "to_ner_dataset", "validate_tags", "write_conll", "write_conll_documents", "write_jsonl",
]
