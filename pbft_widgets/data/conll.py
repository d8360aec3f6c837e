"""CoNLL/BIO token files -> rows {"tokens": [...], "tags": [...]}, plus the two NER corpora we use.

Format read: one token per line with its tag in the LAST column (columns split on tabs when the
line has one, else on whitespace), a blank line between sentences, `-DOCSTART-` lines between
documents. Tags must be IOB2 (`O`, `B-TYPE`, `I-TYPE`; every entity starts with `B-`), which is
what seqeval's strict mode and token-classification heads expect.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ._io import atomic_write_text, read_text
from .splits import normalise_split

NCBI_HUB_ID = "ncbi/ncbi_disease"
_TAG = re.compile(r"^(?P<prefix>[BI])-(?P<type>\S+)$")
_DOCSTART = "-DOCSTART-"
# Candidate file names per split, in order of preference, for folders of CoNLL files.
_SPLIT_FILES = {
    "train": ("train.tsv", "train.conll", "train.txt"),
    "validation": ("devel.tsv", "dev.tsv", "validation.tsv", "dev.conll", "devel.conll", "dev.txt"),
    "test": ("test.tsv", "test.conll", "test.txt"),
}
_SAMPLE = Path("clinical_ner")


def read_conll_documents(path: str | os.PathLike[str], *, repair: bool = False) -> list[list[dict[str, list[str]]]]:
    """Read a CoNLL file as documents (split at `-DOCSTART-`), each a list of sentence rows."""
    documents: list[list[dict[str, list[str]]]] = [[]]
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    sentence_lines: list[list[int]] = []

    def close_sentence() -> None:
        if tokens:
            documents[-1].append({"tokens": tokens.copy(), "tags": tags.copy()})
            sentence_lines.append(lines.copy())
            for buffer in (tokens, tags, lines):
                buffer.clear()

    for number, raw in enumerate(read_text(path, what="CoNLL file").splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            close_sentence()
            continue
        if line.startswith(_DOCSTART):
            close_sentence()
            if documents[-1]:
                documents.append([])
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        if len(columns) < 2 or not columns[0].strip() or not columns[-1].strip():
            raise DataError(
                f"{path}, line {number}: expected 'token<TAB>tag' (tag in the last column), got {line!r}; "
                "put a tab or space between token and tag and a blank line between sentences"
            )
        tokens.append(columns[0].strip())
        tags.append(columns[-1].strip())
        lines.append(number)
    close_sentence()

    documents = [doc for doc in documents if doc]
    if not documents:
        raise DataError(
            f"{path} holds no sentences; expected 'token<TAB>tag' lines with blank lines between sentences"
        )
    rows = [row for doc in documents for row in doc]
    fixed = validate_tags(rows, repair=repair, source=str(path), line_numbers=sentence_lines)
    it = iter(fixed)
    return [[next(it) for _ in doc] for doc in documents]


def read_conll(path: str | os.PathLike[str], *, repair: bool = False) -> list[dict[str, list[str]]]:
    """Read a CoNLL/BIO file into sentence rows {"tokens", "tags"}; `-DOCSTART-` lines are dropped."""
    return [row for doc in read_conll_documents(path, repair=repair) for row in doc]


def validate_tags(
    rows: Sequence[Mapping[str, Any]],
    *,
    repair: bool = False,
    source: str | None = None,
    line_numbers: Sequence[Sequence[int]] | None = None,
) -> list[dict[str, list[str]]]:
    """Check rows are IOB2; with repair=True an I-X that starts an entity becomes B-X instead of failing."""
    where = f"{source}: " if source else ""
    out = []
    for s, row in enumerate(rows):
        tokens, tags = list(row.get("tokens", ())), list(row.get("tags", ()))
        if not tokens or len(tokens) != len(tags):
            raise DataError(
                f"{where}sentence {s} has {len(tokens)} tokens and {len(tags)} tags; "
                "every row needs non-empty 'tokens' and 'tags' lists of the same length"
            )
        previous = "O"
        for t, tag in enumerate(tags):
            at = f"{where}sentence {s}, token {t} ({tokens[t]!r}"
            at += f", line {line_numbers[s][t]})" if line_numbers else ")"
            match = _TAG.match(tag)
            if tag != "O" and not match:
                raise DataError(f"{at}: tag {tag!r} is not IOB2; use 'O', 'B-TYPE' or 'I-TYPE' (e.g. B-DISEASE)")
            if match and match["prefix"] == "I" and previous[2:] != match["type"]:
                if not repair:
                    raise DataError(
                        f"{at}: {tag} does not continue a {match['type']} entity (previous tag {previous}); "
                        f"start entities with B-{match['type']}, or pass repair=True to turn such I- tags into B-"
                    )
                tag = tags[t] = f"B-{match['type']}"
            previous = tag
        out.append({"tokens": tokens, "tags": tags})
    return out


def label_list(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """All labels of the entity types in rows: 'O' first, then B-/I- per type in alphabetical order."""
    types = {tag[2:] for row in rows for tag in row["tags"] if tag != "O"}
    return ["O"] + [f"{prefix}-{name}" for name in sorted(types) for prefix in ("B", "I")]


def write_conll(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write sentence rows as 'token<TAB>tag' lines, a blank line between sentences (atomic)."""
    return write_conll_documents([list(rows)], path, docstart=False)


def write_conll_documents(
    documents: Iterable[Iterable[Mapping[str, Any]]], path: str | os.PathLike[str], *, docstart: bool = True
) -> Path:
    """Write documents of sentence rows, each opened by a `-DOCSTART-` line when docstart=True (atomic)."""
    parts: list[str] = []
    for doc in documents:
        rows = validate_tags(list(doc))
        for row in rows:
            for token in row["tokens"]:
                if not token.strip() or any(ch in token for ch in "\t\n\r"):
                    raise DataError(f"token {token!r} is empty or holds a tab/newline; clean it before writing CoNLL")
        block = "".join("".join(f"{tok}\t{tag}\n" for tok, tag in zip(r["tokens"], r["tags"])) + "\n" for r in rows)
        parts.append((f"{_DOCSTART}\tO\n\n" if docstart else "") + block)
    return atomic_write_text(path, "".join(parts))


def to_ner_dataset(rows: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None):
    """A `datasets.Dataset` with `tokens` and integer `ner_tags` (a ClassLabel sequence) for token heads."""
    from datasets import ClassLabel, Dataset, Features, Sequence as HFSequence, Value

    if not rows:
        raise DataError("cannot build a NER Dataset from 0 rows; check the split name and the file")
    names = list(labels) if labels is not None else label_list(rows)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({tag for row in rows for tag in row["tags"]} - set(index))
    if unknown:
        raise DataError(
            f"tags {unknown} are not in labels {names}; pass labels=label_list(all_rows) built from every split"
        )
    features = Features({"tokens": HFSequence(Value("string")), "ner_tags": HFSequence(ClassLabel(names=names))})
    data = {
        "tokens": [list(row["tokens"]) for row in rows],
        "ner_tags": [[index[tag] for tag in row["tags"]] for row in rows],
    }
    return Dataset.from_dict(data, features=features)


def _split_file(folder: Path, split: str) -> Path:
    if not folder.is_dir():
        raise DataError(f"data_dir {folder} is not a folder; pass the folder that holds train/devel CoNLL files")
    for name in _SPLIT_FILES[split]:
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir() if p.is_file())
    hint = " (this folder has no test split: report results on 'validation')" if split == "test" else ""
    raise DataError(
        f"no {split} file in {folder}{hint}; expected one of {list(_SPLIT_FILES[split])}, found {present}"
    )


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get(name, "").strip().lower() for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(flag in {"1", "true", "yes", "on"} for flag in flags)


def load_ncbi_disease(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None, *, hub_id: str = NCBI_HUB_ID
) -> list[dict[str, list[str]]]:
    """NCBI-disease sentences (tags O/B-Disease/I-Disease) from a local CoNLL folder, else the Hub."""
    split = normalise_split(split)
    if data_dir is not None:
        return read_conll(_split_file(Path(data_dir), split))
    fix = "pass data_dir= a folder with train.tsv/devel.tsv in CoNLL form (e.g. a copy of NCBI-disease)"
    if _hub_offline():
        raise DataError(f"cannot download {hub_id!r} while offline (HF_HUB_OFFLINE is set); {fix}")
    from datasets import load_dataset

    try:
        dataset = load_dataset(hub_id, split=split)
    except Exception as exc:  # network, auth, or a repo that moved: all need the same fix
        raise DataError(f"could not load {hub_id!r} split {split!r} ({type(exc).__name__}: {exc}); {fix}") from exc
    names = dataset.features["ner_tags"].feature.names
    rows = [{"tokens": list(r["tokens"]), "tags": [names[i] for i in r["ner_tags"]]} for r in dataset]
    return validate_tags([row for row in rows if row["tokens"]], source=hub_id)


def clinical_sample_dir() -> Path:
    """Folder of the clinical NER sample: the repo's data_samples/, or the copy shipped in the wheel."""
    package_root = Path(__file__).resolve().parents[1]
    candidates = (package_root.parent / "data_samples" / _SAMPLE, package_root / "samples" / _SAMPLE)
    for folder in candidates:
        if (folder / "train.conll").is_file():
            return folder
    raise DataError(
        f"clinical NER sample not found (looked in {', '.join(str(c) for c in candidates)}); install the "
        "package from a checkout (`pip install -e .`) or pass data_dir= the data_samples/clinical_ner folder"
    )


def load_clinical_sample(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, list[str]]]:
    """The project's own synthetic clinical-note sentences tagged DISEASE/DRUG/SYMPTOM (IOB2)."""
    split = normalise_split(split)
    folder = Path(data_dir) if data_dir is not None else clinical_sample_dir()
    name = {"train": "train.conll", "validation": "dev.conll", "test": "test.conll"}[split]
    return read_conll(folder / name)
