"""Data loaders: shapes, determinism, no group in two splits, and errors that name the fix."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

from pbft_widgets.data import (
    classify_heading,
    clause_type_counts,
    clinical_sample_dir,
    dialect_mix,
    first_sentence,
    label_list,
    load_clinical_sample,
    load_licence_clauses,
    load_ncbi_disease,
    load_stdlib_docstrings,
    load_translation_pairs,
    read_conll,
    read_conll_documents,
    read_jsonl,
    to_dataset,
    to_ner_dataset,
    write_conll,
    write_conll_documents,
    write_jsonl,
)
from pbft_widgets.data.licences import split_clauses
from pbft_widgets.data.splits import assign_balanced, normalise_split
from pbft_widgets.data.translation import normalise_text
from pbft_widgets.errors import DataError

NCBI_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ncbi-disease"
SPLITS = ("train", "validation", "test")
SAMPLE_FILES = {"train": "train.conll", "validation": "dev.conll", "test": "test.conll"}


def entity_mentions(rows):
    """(type, lower-cased text) of every IOB2 entity in rows."""
    found = []
    for row in rows:
        span = None
        for token, tag in zip(row["tokens"] + [""], row["tags"] + ["O"]):
            if span and not tag.startswith("I-"):
                found.append((span[0], " ".join(span[1]).lower()))
                span = None
            if tag.startswith("B-"):
                span = (tag[2:], [token])
            elif tag.startswith("I-"):
                span[1].append(token)
    return found


# --- splits -----------------------------------------------------------------------------------

def test_split_name_aliases_are_one_name():
    assert normalise_split("dev") == normalise_split("devel") == "validation"


def test_balanced_assignment_is_seeded_and_deterministic():
    sizes = {f"module{i}": 1 + i % 5 for i in range(300)}
    first = assign_balanced(sizes, seed=3)
    assert first == assign_balanced(dict(reversed(sizes.items())), seed=3)
    assert first != assign_balanced(sizes, seed=4)
    assert set(first.values()) == set(SPLITS)
    assert assign_balanced({"big": 500, "a": 30, "b": 30}, seed=0)["big"] == "train"


def test_balanced_assignment_meets_ratios_per_stratum_and_skips_empty_splits():
    sizes = {f"g{i}": 1 + i % 7 for i in range(400)}
    strata = {g: "a" if i % 3 else "b" for i, g in enumerate(sizes)}
    chosen = assign_balanced(sizes, {"train": 0.7, "validation": 0.15, "test": 0.15}, seed=1, strata=strata)
    for stratum in "ab":
        total = sum(n for g, n in sizes.items() if strata[g] == stratum)
        per_split = Counter()
        for g, n in sizes.items():
            if strata[g] == stratum:
                per_split[chosen[g]] += n
        assert abs(per_split["train"] / total - 0.7) < 0.03
        assert abs(per_split["test"] / total - 0.15) < 0.03
    no_val = assign_balanced(sizes, {"train": 0.5, "test": 0.5}, seed=0)
    assert set(no_val.values()) == {"train", "test"}


# --- jsonl ------------------------------------------------------------------------------------

def test_jsonl_roundtrip_keeps_unicode_and_writes_atomically(tmp_path):
    rows = [{"text": "Nahuatl: tlazohcamati", "label": "ñ"}, {"text": "two", "label": "ü"}]
    path = write_jsonl(rows, tmp_path / "out" / "rows.jsonl")
    assert read_jsonl(path, required=["text", "label"]) == rows
    assert "ñ" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]  # no temp file left behind


def test_to_dataset_converts_rows():
    ds = to_dataset([{"prompt": "a", "completion": " b"}, {"prompt": "c", "completion": " d"}])
    assert ds.column_names == ["prompt", "completion"] and len(ds) == 2


# --- conll ------------------------------------------------------------------------------------

def test_conll_reads_tabs_spaces_and_documents(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nPt\tO\nhas\tO\nCOPD\tB-DISEASE\n.\tO\n\n"
        "-DOCSTART- -X- -X- O\n\nstarted NN O\nalbuterol NN B-DRUG\n\n\nchest NN B-SYMPTOM\npain NN I-SYMPTOM\n",
        encoding="utf-8",
    )
    rows = read_conll(path)
    assert rows[0] == {"tokens": ["Pt", "has", "COPD", "."], "tags": ["O", "O", "B-DISEASE", "O"]}
    assert rows[1]["tags"] == ["O", "B-DRUG"] and rows[2]["tokens"] == ["chest", "pain"]
    assert [len(doc) for doc in read_conll_documents(path)] == [1, 2]
    assert label_list(rows) == ["O", "B-DISEASE", "I-DISEASE", "B-DRUG", "I-DRUG", "B-SYMPTOM", "I-SYMPTOM"]


def test_conll_i_tag_without_b_fails_with_position_unless_repaired(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("no\tO\n\nchest\tI-SYMPTOM\npain\tI-SYMPTOM\nand\tO\nCOPD\tI-DISEASE\n", encoding="utf-8")
    with pytest.raises(DataError):
        read_conll(path)
    repaired = read_conll(path, repair=True)
    assert repaired[1]["tags"] == ["B-SYMPTOM", "I-SYMPTOM", "O", "B-DISEASE"]


def test_conll_write_roundtrip_and_ner_dataset(tmp_path):
    rows = [
        {"tokens": ["Denies", "chest", "pain", "."], "tags": ["O", "B-SYMPTOM", "I-SYMPTOM", "O"]},
        {"tokens": ["on", "metformin"], "tags": ["O", "B-DRUG"]},
    ]
    assert read_conll(write_conll(rows, tmp_path / "a.conll")) == rows
    assert read_conll_documents(write_conll_documents([rows[:1], rows[1:]], tmp_path / "b.conll")) == [rows[:1], rows[1:]]
    ds = to_ner_dataset(rows)
    names = ds.features["ner_tags"].feature.names
    assert [names[i] for i in ds[0]["ner_tags"]] == rows[0]["tags"]


@pytest.mark.skipif(not NCBI_DIR.is_dir(), reason=f"NCBI-disease CoNLL folder not found at {NCBI_DIR}")
def test_ncbi_disease_local_folder_matches_its_readme():
    train, dev = load_ncbi_disease("train", NCBI_DIR), load_ncbi_disease("dev", NCBI_DIR)
    assert (len(train), len(dev)) == (5432, 923)
    assert Counter(t for r in train for t in r["tags"])["B-Disease"] == 5145
    assert Counter(t for r in dev for t in r["tags"])["B-Disease"] == 787
    assert label_list(train) == ["O", "B-Disease", "I-Disease"]


# --- clinical sample --------------------------------------------------------------------------

def test_clinical_sample_is_big_valid_and_split_by_note():
    assert sorted(p.name for p in clinical_sample_dir().glob("*.conll")) == sorted(SAMPLE_FILES.values())
    splits = {name: load_clinical_sample(name) for name in SPLITS}
    assert sum(len(rows) for rows in splits.values()) >= 300
    assert load_clinical_sample("dev") == splits["validation"]
    for rows in splits.values():
        assert {t[2:] for r in rows for t in r["tags"] if t != "O"} == {"DISEASE", "DRUG", "SYMPTOM"}
    sentences = {name: {" ".join(r["tokens"]) for r in rows} for name, rows in splits.items()}
    assert not sentences["train"] & sentences["test"] and not sentences["train"] & sentences["validation"]
    notes = {name: len(read_conll_documents(clinical_sample_dir() / SAMPLE_FILES[name])) for name in SPLITS}
    assert notes["train"] > notes["validation"] > 0 and notes["test"] > 0
    distinct = {kind for kind, _ in entity_mentions(splits["train"])}
    assert distinct == {"DISEASE", "DRUG", "SYMPTOM"}


def test_clinical_datasheet_counts_are_current():
    lines, everything = [], []
    for name in SPLITS:
        docs = read_conll_documents(clinical_sample_dir() / SAMPLE_FILES[name])
        rows = [row for doc in docs for row in doc]
        everything += rows
        counts = Counter(kind for kind, _ in entity_mentions(rows))
        tokens = sum(len(r["tokens"]) for r in rows)
        lines.append(f"| {SAMPLE_FILES[name]} | {name} | {len(docs)} | {len(rows)} | {tokens} | "
                     f"{counts['DISEASE']} | {counts['DRUG']} | {counts['SYMPTOM']} |")
    mentions = entity_mentions(everything)
    distinct = {k: len({text for kind, text in mentions if kind == k}) for k in ("DISEASE", "DRUG", "SYMPTOM")}
    lines.append(f"Distinct mentions (lower-cased) over all files: DISEASE {distinct['DISEASE']}, "
                 f"DRUG {distinct['DRUG']}, SYMPTOM {distinct['SYMPTOM']}.")
    sheet = (clinical_sample_dir() / "DATASHEET.md").read_text(encoding="utf-8")
    missing = [line for line in lines if line not in sheet]
    assert not missing, "update DATASHEET.md with:\n" + "\n".join(lines)
    assert sum(distinct.values()) >= 300  # hundreds of distinct diseases, drugs and symptoms


# --- stdlib docstrings ------------------------------------------------------------------------

def test_first_sentence_is_the_summary_target():
    assert first_sentence("Return the sum. Raise on overflow.") == "Return the sum."
    assert first_sentence("Is it empty? Cheap to ask.") == "Is it empty?"
    assert first_sentence("Version 3.11 of the\n   parser, no full stop") == "Version 3.11 of the parser, no full stop"
    assert first_sentence("  ") == ""


def test_docstrings_from_a_small_library(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(
        'class Box:\n'
        '    @property\n'
        '    def size(self):\n'
        '        """Number of items held in the box right now.\n\n        More detail here.\n        """\n'
        '        text = """\nraw\n"""\n'
        '        return len(text)\n\n'
        '    class Inner:\n'
        '        def go(self):\n'
        '            "Start the inner machinery of the box."\n'
        '            return 1\n\n'
        'def only_doc():\n    """A function with nothing but its docstring."""\n\n'
        'def short():\n    """Too short."""\n    return 0\n',
        encoding="utf-8",
    )
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test_x.py").write_text('def t():\n    """A test function docstring long."""\n    pass\n')
    rows = load_stdlib_docstrings(None, root=tmp_path)
    assert [(r["module"], r["qualname"]) for r in rows] == [("pkg", "Box.size"), ("pkg", "Box.Inner.go")]
    size = rows[0]
    assert size["docstring"] == "Number of items held in the box right now."
    assert size["source"].startswith("@property\ndef size(self):\n    text = ") and '"""Number' not in size["source"]
    assert size["n_lines"] == size["source"].count("\n") == 6
    ast.parse(size["source"])
    full = load_stdlib_docstrings(None, root=tmp_path, summary_only=False)
    assert "More detail here." in full[0]["docstring"]


def test_stdlib_docstrings_split_by_top_level_package_deterministically():
    splits = {name: load_stdlib_docstrings(name) for name in SPLITS}
    total = sum(len(rows) for rows in splits.values())
    assert total > 4000
    packages = {name: {r["module"].split(".")[0] for r in rows} for name, rows in splits.items()}
    assert not packages["train"] & packages["test"] and not packages["train"] & packages["validation"]
    assert not packages["validation"] & packages["test"]
    assert all(r["package"] == r["module"].split(".")[0] for rows in splits.values() for r in rows)
    assert abs(len(splits["train"]) / total - 0.8) < 0.03
    assert load_stdlib_docstrings("test") == splits["test"]
    assert load_stdlib_docstrings("test", seed=1) != splits["test"]
    sample = splits["validation"][::50]
    for row in sample:
        assert set(row) == {"module", "package", "qualname", "source", "docstring", "n_lines"}
        assert len(row["docstring"]) >= 20 and "\n" not in row["docstring"] and len(row["source"]) <= 4000
        assert row["docstring"] not in row["source"]
        ast.parse(row["source"])
    assert not any(r["module"].split(".")[0] in {"idlelib", "lib2to3"} or ".test" in r["module"]
                   for rows in splits.values() for r in rows)


# --- licence clauses --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Term and Termination", "termination"),
        ("EXPORT RESTRICTIONS", "export control"),
        ("Grant of Patent License", "patents"),
        ("Grant of Copyright License", "grant"),
        ("Governing Law, Jurisdiction and Venue", "governing law"),
        ("DISCLAIMER OF WARRANTY", "warranty disclaimer"),
        ("Limitation of Liability", "limitation of liability"),
        ("Redistribution", "distribution"),
        ("Miscellaneous", None),
        ("Widgets and Gadgets", None),
    ],
)
def test_clause_headings_map_by_keyword_rules(heading, expected):
    assert classify_heading(heading) == expected


def test_split_clauses_handles_numbered_inline_inherited_and_caps_headings():
    text = (
        "Preamble text that belongs to no clause.\n\n"
        "1. Definitions.\n\"Software\" means the program.\n\n"
        "2. Restrictions\n2.1 You shall not reverse engineer the Software.\n\n"
        "17. Governing Law. This Agreement is governed by the laws of Utopia.\n\n"
        "NO WARRANTY\n\nThe Software is provided as is.\n"
    )
    assert split_clauses(text) == [
        ("Definitions", "\"Software\" means the program."),
        ("Restrictions", "You shall not reverse engineer the Software."),
        ("Governing Law", "This Agreement is governed by the laws of Utopia."),
        ("NO WARRANTY", "The Software is provided as is."),
    ]


def test_licence_clauses_cover_many_types_and_split_by_document():
    everything = load_licence_clauses(None)
    counts = clause_type_counts(everything)
    assert sum(n >= 30 for n in counts.values()) >= 20
    splits = {name: load_licence_clauses(name) for name in SPLITS}
    assert sum(len(rows) for rows in splits.values()) == len(everything)
    docs = {name: {r["doc_key"] for r in rows} for name, rows in splits.items()}
    assert not docs["train"] & docs["test"] and not docs["train"] & docs["validation"]
    assert not docs["validation"] & docs["test"]
    texts = [r["text"] for r in everything]
    assert len(texts) == len(set(texts))
    assert all(40 <= len(t) <= 2500 for t in texts)
    assert set(everything[0]) == {"doc_key", "heading", "clause_type", "text"}
    assert load_licence_clauses("test") == splits["test"]
    capped = clause_type_counts(load_licence_clauses(None, max_per_type=50))
    assert max(capped.values()) == 50 and set(capped) == set(counts)


# --- translation ------------------------------------------------------------------------------

def test_translation_text_normalisation():
    assert normalise_text("  Auh  yn\u0301 || 31r  ynin\n") == "Auh yń ynin"
    assert normalise_text("\ufeffInin tlacatl") == "Inin tlacatl"  # stray byte-order marks in the corpus


def test_translation_document_split_keeps_documents_whole():
    splits = {name: load_translation_pairs("axolotl", name) for name in SPLITS}
    sources = {name: {r["source"] for r in rows} for name, rows in splits.items()}
    assert not sources["train"] & sources["test"] and not sources["train"] & sources["validation"]
    assert not sources["validation"] & sources["test"]
    everything = load_translation_pairs("axolotl", None)
    assert sum(len(rows) for rows in splits.values()) == len(everything) > 13000
    assert set(everything[0]) == {"es", "target", "dialect", "source"}
    assert len({(r["es"].lower(), r["target"].lower()) for r in everything}) == len(everything)
    assert all(r["es"] != r["target"] and 0 < len(r["es"]) <= 400 and "||" not in r["target"] for r in everything)
    assert "Classical Nahuatl" in dialect_mix(splits["test"])
    assert load_translation_pairs("axolotl", "test") == splits["test"]


def test_translation_pair_split_spreads_every_dialect():
    splits = {name: load_translation_pairs("tsunkua", name, group_by="pair") for name in SPLITS}
    spanish = {name: {r["es"].lower() for r in rows} for name, rows in splits.items()}
    assert not spanish["train"] & spanish["test"] and not spanish["train"] & spanish["validation"]
    mixes = {name: dialect_mix(rows) for name, rows in splits.items()}
    for dialect in ("Otomí del Mezquital (ote)", "Otomí del Estado de México (ots)"):
        shares = [mixes[name][dialect] / sum(mixes[name].values()) for name in SPLITS]
        assert max(shares) - min(shares) < 0.05
    only = load_translation_pairs("axolotl", "train", dialects=["Central Nahuatl"], group_by="pair")
    assert {r["dialect"] for r in only} == {"Central Nahuatl"}
