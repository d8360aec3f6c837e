"""Licence and EULA clauses from the ScanCode licence database (`licensedcode-data`, CC-BY-4.0).

Each `*.LICENSE` file is YAML front matter then the licence text. Texts are cut at their headings
and each heading is mapped to a clause type by the keyword rules in CLAUSE_RULES; the clause text
(heading removed, so the label is not written in the input) is what a classifier sees.

Headings recognised (one line each):
  * numbered: "17. Governing Law.", "1.1 Definitions", "2) License Grant", "IV. Permissions",
    "Section 3 - Warranty", "ARTICLE 5: TERM", "a. Distributable Code.", "ii. Distribution
    Requirements." (letters and lower-case roman numerals nest below numbers). The title may run
    on into the clause ("1.1 License. Subject to the terms ..."). A numbered clause with no title of its own
    ("3.1 You shall not ...") takes the title of its nearest shallower titled parent ("3. Restrictions").
  * unnumbered ALL-CAPS lines after a blank line, up to 8 words ("NO WARRANTY", "TERMINATION").

Mapping: the heading is lower-cased and CLAUSE_RULES is tried top to bottom; the first type with a
matching pattern wins (so "Term and Termination" is termination, "Export Restrictions" is export
control, "Grant of Patent License" is patents). Headings in IGNORED_HEADINGS, or matching no
rule, end the previous clause but yield no example (preambles, exhibits, "Miscellaneous" grab-bags
whose text mixes several types).

Clean-up: whitespace normalised; clauses shorter than `min_chars` or longer than `max_chars`
dropped; duplicates kept once, from the alphabetically first licence: hundreds of licences reuse
Apache/MPL/GPL wording with only names changed, so the key ignores capitalised words (`_fingerprint`).
Splits are by licence DOCUMENT: no licence has clauses in two splits.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import DataError, DependencyError
from .splits import check_ratios, hash_unit, normalise_split, rows_in_split

# clause type -> patterns searched in the lower-cased heading; earlier types win.
CLAUSE_RULES: dict[str, tuple[str, ...]] = {
    "definitions": (r"\bdefinition", r"\binterpretation\b", r"\bdefined terms\b"),
    "export control": (r"\bexport", r"\bsanction", r"\bembargo"),
    "government rights": (r"\bgovernment", r"\brestricted rights\b"),
    "indemnification": (r"\bindemni", r"\bhold harmless\b"),
    "licence versions": (
        r"\bnew versions?\b", r"\bversions? of (the|this) licen[cs]e",
        r"\brevisions? of (the|this) licen[cs]e", r"\bfuture revisions\b",
    ),
    "amendments": (
        r"\bamendment", r"\b(changes|modifications?) (to|of) (this|the) (agreement|terms|licen[cs]e)",
    ),
    "limitation of liability": (r"\bliabilit", r"\bdamages?\b", r"\bremed(y|ies)\b"),
    "warranty disclaimer": (r"\bwarrant", r"\bdisclaim", r"\bas[- ]is\b"),
    "patents": (r"\bpatent",),
    "trademarks": (
        r"\btrademark", r"\blogos?\b", r"\bmarks\b", r"\bbrand", r"\bpublicity\b",
        r"\buse of (the )?names?\b", r"\bendorse",
    ),
    "termination": (r"\bterminat", r"\bsuspension\b"),
    "term": (
        r"^term$", r"\bterm of (this|the) (agreement|licen[cs]e)\b", r"\bduration\b", r"^effective date$",
        r"\bagreement term\b",
    ),
    "governing law": (
        r"\bgoverning law\b", r"\bapplicable law\b", r"\bchoice of law\b", r"\bjurisdiction\b",
        r"\bvenue\b", r"\bgoverning language\b", r"^law$",
    ),
    "dispute resolution": (r"\barbitrat", r"\bdispute", r"\bclass action", r"\battorneys?'? fees\b"),
    "confidentiality": (r"\bconfidential", r"\bnon-?disclosure\b"),
    "assignment": (r"\bassign", r"\btransfer"),
    "severability": (r"\bseverab", r"\binvalidity\b", r"\bpartial invalidity\b"),
    "entire agreement": (
        r"\bentire agreement\b", r"\bintegration\b", r"\b(whole|complete) agreement\b",
        r"\bentire understanding\b",
    ),
    "payment and fees": (r"\bfees?\b", r"\bpayments?\b", r"\broyalt", r"\bpric(e|ing)\b", r"\btax"),
    "support and updates": (r"\bsupport\b", r"\bmaintenance\b", r"\bupdates?\b", r"\bupgrades?\b"),
    "audit": (r"\baudit", r"\brecords\b", r"\binspection\b"),
    "feedback and contributions": (
        r"\bfeedback\b", r"\bcontributions?\b", r"\bsubmissions?\b", r"\bsuggestions\b",
    ),
    "privacy and data": (
        r"\bprivacy\b", r"\bpersonal data\b", r"\bdata protection\b", r"\bdata collection\b",
        r"\bconsent to (the )?use of data\b", r"^data$",
    ),
    "third-party software": (
        r"\bthird[- ]party (software|components|code|materials|programs|content|notices|applications)\b",
        r"\bopen source (software|components)\b",
    ),
    "source code": (r"\bsource code\b", r"\bcorresponding source\b"),
    "attribution and notices": (
        r"\brequired notices\b", r"\bcopyright notices?\b", r"\battribution\b", r"\blegal notices\b",
    ),
    "notices": (r"^notices?$", r"\bnotices? to\b", r"\bcommunications\b"),
    "ownership": (
        r"\bownership\b", r"\btitle\b", r"\bintellectual property\b", r"\bproprietary rights\b",
        r"\breservation of rights\b", r"\brights reserved\b", r"^copyright$",
    ),
    "modifications and derivative works": (
        r"\bmodif", r"\bderivative", r"\blarger works?\b", r"\bcombin", r"\baggregation\b",
    ),
    "distribution": (r"distribut", r"\bconvey", r"\bcopying in quantity\b", r"\bverbatim cop"),
    "restrictions": (
        r"\brestrict", r"\bprohibit", r"\blimitations? on use\b", r"\bacceptable use\b",
        r"\bconditions of use\b",
    ),
    "grant": (
        r"\bgrant", r"\blicen[cs]e to use\b", r"\bscope of licen", r"\buse rights\b", r"\bpermissions?\b",
        r"\brights granted\b", r"^licen[cs]e$", r"\bpermitted uses?\b", r"\bright to use\b",
        r"\binstallation and use\b",
    ),
    "acceptance": (r"\baccept",),
    "waiver": (r"\bwaiver\b",),
    "force majeure": (r"\bforce majeure\b",),
    "survival": (r"\bsurviv",),
}
IGNORED_HEADINGS = (
    r"\bpreamble\b", r"\bintroduction\b", r"\bexhibit\b", r"\bappendix\b", r"\bschedule\b", r"\bmiscellaneous\b",
    r"^general( provisions| terms)?$", r"\bhow to apply\b", r"\bend of terms\b",
)
_RULES = [(name, re.compile("|".join(patterns))) for name, patterns in CLAUSE_RULES.items()]
_IGNORED = re.compile("|".join(IGNORED_HEADINGS))

_NUMBERED = re.compile(
    r"""^\s*(?:
        (?i:section|article|clause|§)\s*(?P<word>\d{1,2}(?:\.\d{1,2}){0,3}|[IVX]{1,5})\.?(?:\s*[-–:.]\s*|\s+)
      | (?P<arabic>\d{1,2}(?:\.\d{1,2}){0,3})[.)]?\s+(?=[A-Z"“])   # "17. Governing", "1.1 Definitions", "2) License"
      | (?P<roman>[IVX]{1,5})[.)]\s+                                # "IV. Permissions"
      | (?P<letter>[a-h]|[ivx]{1,4})[.)]\s+(?=[A-Z"“])               # "a. Distributable Code.", "ii. Distribution"
    )(?P<rest>\S.*)$""",
    re.VERBOSE,
)
_CAPS = re.compile(r"^\s*(?P<title>[A-Z][A-Z0-9 ,;&/'’()-]{2,70}?)\s*[.:]?\s*$")
_TITLE_END = re.compile(r"^(?P<title>(?:[A-Z]\.){0,3}[^.:;!?]{2,80}?)(?:\s*[.:]\s+|\s+[-–—]\s+)(?P<body>\S.*)$")
_DANGLING = {"and", "or", "of", "the", "to", "a", "an", "in", "for", "with", "by", "on", "any"}
_NOT_TITLE = re.compile(
    r"\b(you|your|must|may|shall|will|is|are|be|was|were|has|have|grants?|hereby|agrees?)\b", re.IGNORECASE
)


def licence_dir() -> Path:
    """Folder of licence texts in the installed `licensedcode-data` package."""
    spec = importlib.util.find_spec("licensedcode")
    for base in spec.submodule_search_locations if spec and spec.submodule_search_locations else ():
        folder = Path(base) / "data" / "licenses"
        if folder.is_dir():
            return folder
    raise DependencyError("licensedcode-data is not installed; run `pip install licensedcode-data`")


def _title(text: str) -> str | None:
    """A short heading-like phrase (<= 8 words, no verbs of obligation), else None."""
    text = text.strip().rstrip(".:").strip()
    words = text.split()
    if not 1 <= len(words) <= 8 or not text[0].isupper() or _NOT_TITLE.search(text):
        return None
    if words[-1].lower().strip(",") in _DANGLING or text.endswith(","):
        return None  # a sentence wrapped onto the next line, not a title
    return text


def _heading(line: str, previous_blank: bool) -> tuple[int, str | None, str] | None:
    """(depth, title or None, body on the same line) when the line opens a section, else None."""
    match = _NUMBERED.match(line)
    if match and not re.match(r"^\d", match["rest"]):
        rest = match["rest"].strip()
        if match["letter"]:  # lettered or lower-roman items nest below any numbered level
            depth = 6 if set(match["letter"]) <= set("ivx") else 5
        else:
            num = match["word"] or match["arabic"] or match["roman"]
            depth = num.count(".") + 1 if num[0].isdigit() else 0
        split = _TITLE_END.match(rest)
        if split and _title(split["title"]):
            return depth, _title(split["title"]), split["body"]
        if _title(rest):
            return depth, _title(rest), ""
        return depth, None, rest
    caps = _CAPS.match(line)
    if previous_blank and caps and any(c.isalpha() for c in caps["title"]) and _title(caps["title"]):
        return 1, _title(caps["title"]), ""
    return None


def classify_heading(heading: str) -> str | None:
    """Clause type of a heading by CLAUSE_RULES (None when ignored or unmatched)."""
    key = " ".join(heading.lower().replace("’", "'").split())
    if _IGNORED.search(key):
        return None
    for name, pattern in _RULES:
        if pattern.search(key):
            return name
    return None


def split_clauses(text: str) -> list[tuple[str, str]]:
    """(heading, clause text) for every titled section of one licence text, in order."""
    sections: list[tuple[str | None, list[str]]] = []
    titles: dict[int, str] = {}  # depth -> title of the latest titled section at that depth
    previous_blank = True
    lines = text.splitlines()
    for index, line in enumerate(lines):
        found = _heading(line, previous_blank)
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if found is not None and found[1] is not None and not found[2] and following[:1].islower():
            found = found[0], None, line.strip()  # "1. A perpetual, worldwide" + "licence to ...": no title
        if found is not None:
            depth, title, body = found
            if title is not None:
                titles = {d: t for d, t in titles.items() if d < depth} | {depth: title}
                heading = title
            else:
                parents = [t for d, t in titles.items() if d < depth]
                heading = parents[-1] if parents else None
            sections.append((heading, [body]))
        elif sections:
            sections[-1][1].append(line)
        previous_blank = not line.strip()
    out = []
    for heading, lines in sections:
        paragraphs = [" ".join(p.split()) for p in "\n".join(lines).split("\n\n")]
        body = "\n".join(p for p in paragraphs if p)
        if heading is not None and body:
            out.append((heading, body))
    return out


def _body(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.startswith("---"):
        end = text.find("\n---", 3)
        text = text[end + 4 :] if end != -1 else text
    return text


@lru_cache(maxsize=2)
def _scan(folder: str) -> tuple[dict[str, Any], ...]:
    rows = []
    for path in sorted(Path(folder).glob("*.LICENSE")):
        for heading, body in split_clauses(_body(path)):
            clause_type = classify_heading(heading)
            if clause_type is not None:
                rows.append({"doc_key": path.stem, "heading": heading, "clause_type": clause_type, "text": body})
    return tuple(rows)


def _fingerprint(text: str) -> str:
    """Key under which template copies collide: lower-case words only, names and defined terms dropped.

    "Once Covered Code has been published ..." and "Once Covered Software has been published ..."
    (two licences from one template) share a key. Mostly upper-case texts, and texts with under
    8 lower-case words, keep all their words.
    """
    words = re.findall(r"[A-Za-z]+", text)
    lower = [w for w in words if w.islower()]
    kept = lower if len(lower) >= 8 and len(lower) * 2 >= len(words) else [w.lower() for w in words]
    return hashlib.sha256(" ".join(kept).encode("utf-8")).hexdigest()


def load_licence_clauses(
    split: str | None = "train",
    *,
    min_chars: int = 40,
    max_chars: int = 2500,
    min_per_type: int = 30,
    max_per_type: int | None = None,
    ratios: dict[str, float] | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, str]]:
    """Rows {doc_key, heading, clause_type, text} of one split (None: all), split by licence document.

    Types with fewer than `min_per_type` clauses (after de-duplication) are dropped: too few to
    learn and to score. `max_per_type` caps every type (a seeded sample) before splitting, for a
    less skewed label set.
    """
    folder = Path(data_dir) if data_dir is not None else licence_dir()
    if not folder.is_dir() or not any(folder.glob("*.LICENSE")):
        raise DataError(f"no *.LICENSE files in {folder}; pass data_dir= the licensedcode/data/licenses folder")
    fractions = check_ratios(ratios)
    wanted = normalise_split(split) if split is not None else None
    seen: set[str] = set()
    rows = []
    for row in _scan(str(folder.resolve())):
        key = _fingerprint(row["text"])
        if min_chars <= len(row["text"]) <= max_chars and key not in seen:
            seen.add(key)
            rows.append(dict(row))
    by_type: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_type[row["clause_type"]].append(row)
    keep = {
        id(row)
        for group in by_type.values()
        if len(group) >= min_per_type
        for row in sorted(group, key=lambda r: hash_unit(r["doc_key"] + r["text"], seed))[:max_per_type]
    }
    rows = [row for row in rows if id(row) in keep]
    return rows_in_split(
        rows, "doc_key", fractions, wanted, seed=seed,
        if_empty=f"no clauses left in split {split!r}; lower min_chars ({min_chars}) or min_per_type "
        f"({min_per_type}), or raise max_chars ({max_chars})")


def clause_type_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    """Examples per clause type, most frequent first."""
    return dict(Counter(row["clause_type"] for row in rows).most_common())
