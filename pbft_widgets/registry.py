"""The method registry: one frozen description per PBFT method, asked by every other module.

A method is more than a name: what PEFT type builds it, which tasks it serves, whether it runs on a
4-bit base, whether it inserts virtual tokens into the input (so padding shifts its positions,
peft #1093), whether it lives in the key/value cache, whether batches can drop padding, whether it
has a LoRA part, its typed options and the training defaults that make it work. Modules ask the
spec (``spec.inserts_input_tokens``) instead of comparing names, so a seventh method is one entry
here. Recovering the spec of a loaded model is :func:`pbft_widgets.model_facts.method_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from peft import PeftType, TaskType

from .errors import ConfigError

TASK_TYPES: Mapping[str, TaskType] = MappingProxyType({
    "causal-lm": TaskType.CAUSAL_LM,
    "token-classification": TaskType.TOKEN_CLS,
    "sequence-classification": TaskType.SEQ_CLS,
})
TASKS = tuple(TASK_TYPES)

OptionKind = Literal["int", "float", "bool", "choice", "text", "names"]
_TRUE, _FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


@dataclass(frozen=True)
class Option:
    """One option of ``apply_method`` for a method: its type, default and what it does.

    ``default=None`` means "chosen automatically" (``help`` says how). Widgets build their controls
    from ``kind`` and ``choices``; :meth:`from_text` reads what a user typed into a text field.
    """

    name: str
    kind: OptionKind
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    def from_text(self, text: str) -> Any:
        """The typed value of ``text`` (empty means the default); ConfigError names the expected form."""
        text = text.strip()
        if not text:
            return self.default
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
        except ValueError:
            raise ConfigError(f"{self.name}={text!r}; type a {self.kind} number, or leave it empty for "
                              f"the default ({self.help})") from None
        if self.kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise ConfigError(f"{self.name}={text!r}; type true or false, or leave it empty for the default")
            return text.lower() in _TRUE
        if self.kind == "names":
            return [part.strip() for part in text.split(",") if part.strip()]
        if self.choices and text not in self.choices:
            raise ConfigError(f"{self.name}={text!r}; use one of {', '.join(self.choices)}")
        return text


@dataclass(frozen=True)
class TrainingDefaults:
    """What makes a method train: a soft prompt needs a learning rate ~30-100x that of LoRA.

    ``learning_rate_range`` is the span that worked on the embedded models; the dashboard warns
    outside it. ``prompt_learning_rate`` is set for methods with a prompt and a LoRA part (two
    optimizer groups).
    """

    learning_rate: float
    learning_rate_range: tuple[float, float]
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False
    prompt_learning_rate: float | None = None


@dataclass(frozen=True)
class MethodSpec:
    """Everything the package needs to know about one method; see the module docstring."""

    name: str
    summary: str
    peft_type: PeftType
    tasks: tuple[str, ...]
    options: tuple[Option, ...]
    training: TrainingDefaults
    inserts_input_tokens: bool = False  # virtual tokens are input positions (prompt tuning, P-tuning)
    prompt_in_cache: bool = False  # the prompt is a key/value prefix in every layer (prefix tuning)
    has_lora: bool = False
    needs_4bit: bool = False
    works_on_quantized: bool = False
    quantized_advice: str = ""  # the fix, when a quantized base is refused
    allows_gradient_checkpointing: bool = True
    trains_padding_free: bool = False  # adds no positions of its own: rows can share one unpadded sequence
    option_names: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "option_names", tuple(option.name for option in self.options))

    @property
    def learns_prompt(self) -> bool:
        """A soft prompt or a prefix: something to inspect with the neighbour and attention tools."""
        return self.inserts_input_tokens or self.prompt_in_cache

    @property
    def combines_prompt_and_lora(self) -> bool:
        """A soft prompt around a LoRA model: saved as two standard PEFT adapters side by side."""
        return self.inserts_input_tokens and self.has_lora

    @property
    def mergeable(self) -> bool:
        """LoRA alone merges into the weights; virtual tokens and prefixes have no weights to merge into."""
        return self.has_lora and not self.learns_prompt

    def option(self, name: str) -> Option:
        """The option called ``name`` (StopIteration if the method has none by that name)."""
        return next(option for option in self.options if option.name == name)

    def option_defaults(self) -> dict[str, Any]:
        """Option name -> default, as apply_method fills them in."""
        return {option.name: option.default for option in self.options}

    def training_defaults(self) -> dict[str, Any]:
        """The defaults as the plain dict a PeftSetup and an adapter manifest carry.

        Training batches are right-padded for every method; generation pads on the left, and methods
        that insert input tokens batch only prompts of equal length (PEFT ignores position_ids for
        them, so left padding would put pads between prompt and text).
        """
        values = {"learning_rate": self.training.learning_rate,
                  "learning_rate_range": self.training.learning_rate_range,
                  "weight_decay": self.training.weight_decay,
                  "gradient_checkpointing": self.training.gradient_checkpointing,
                  "padding_side": "right", "generation_padding_side": "left",
                  "generation_batching": "equal-length" if self.inserts_input_tokens else "padded"}
        if self.training.prompt_learning_rate is not None:
            values["prompt_learning_rate"] = self.training.prompt_learning_rate
        return values

    def describe(self) -> dict[str, Any]:
        """One row for tables and method pickers."""
        return {"method": self.name, "summary": self.summary, "tasks": list(self.tasks),
                "works_on_4bit": self.works_on_quantized, "options": self.option_defaults(),
                "training_defaults": self.training_defaults()}


_CHECKPOINTING = Option("gradient_checkpointing", "bool", False,
                        "recompute activations in the backward pass: less memory, ~30% more compute")
_VIRTUAL_TOKENS = Option("num_virtual_tokens", "int", 20, "length of the learned prompt, typically 8-100")
_PROMPT = (
    _VIRTUAL_TOKENS,
    Option("init", "choice", "random", "where the soft prompt starts: random vectors, sampled vocabulary "
           "embeddings, the embeddings of init_text (or the template's instruction), or of the label words",
           choices=("random", "text", "sample-vocab", "label-words")),
    Option("init_text", "text", None, "text for init='text' (default: the template's instruction)"),
)
_LORA = (
    Option("r", "int", 8, "LoRA rank: capacity of each low-rank update"),
    Option("lora_alpha", "int", 16, "LoRA scaling numerator (the update is scaled by alpha / r)"),
    Option("lora_dropout", "float", 0.05, "dropout on the LoRA input, in [0, 1)"),
    Option("target_modules", "names", None, "linear layers to adapt, comma-separated (default: PEFT's "
           "choice for the architecture, e.g. q_proj, v_proj)"),
)
_QUANTIZED_PREFIX = ("PEFT's prefix tuning fails there (peft #2035); use prompt-tuning, lora, or qlora on a quantized "
                     "model, or load it without quantization")

SPECS: Mapping[str, MethodSpec] = MappingProxyType({spec.name: spec for spec in (
    MethodSpec(
        name="prompt-tuning", peft_type=PeftType.PROMPT_TUNING,
        summary="learned virtual-token embeddings before the input; the model is frozen",
        tasks=("causal-lm", "sequence-classification"), options=(*_PROMPT, _CHECKPOINTING),
        training=TrainingDefaults(learning_rate=3e-2, learning_rate_range=(3e-2, 1e-1)),
        inserts_input_tokens=True, works_on_quantized=True),
    MethodSpec(
        name="prefix-tuning", peft_type=PeftType.PREFIX_TUNING,
        summary="learned key/value prefixes in every attention layer (P-tuning v2 on encoders)",
        tasks=TASKS, options=(
            _VIRTUAL_TOKENS,
            Option("prefix_projection", "bool", False, "produce the prefix with a trained MLP (saved too)"),
            Option("encoder_hidden_size", "int", None, "hidden size of that MLP (default: the model's)"),
            Option("init", "choice", None, "activations: start at the keys/values of real tokens (causal LMs "
                   "without projection, the default there); random: PEFT's N(0, 1)",
                   choices=("activations", "random")),
            Option("init_text", "text", None, "tokens whose activations start the prefix (default: the "
                   "template's instruction, else random vocabulary tokens)"),
            _CHECKPOINTING),
        # PEFT raises under gradient checkpointing (peft #869); TRL turns it on by default.
        training=TrainingDefaults(learning_rate=1e-2, learning_rate_range=(5e-3, 3e-2)),
        prompt_in_cache=True, quantized_advice=_QUANTIZED_PREFIX, allows_gradient_checkpointing=False),
    MethodSpec(
        name="p-tuning", peft_type=PeftType.P_TUNING,
        summary="virtual tokens produced by a small MLP/LSTM encoder",
        tasks=("causal-lm", "sequence-classification"), options=(
            _VIRTUAL_TOKENS,
            Option("encoder", "choice", "mlp", "the prompt encoder's architecture", choices=("mlp", "lstm")),
            Option("encoder_hidden_size", "int", None, "hidden size of the encoder (default: the model's)"),
            Option("encoder_num_layers", "int", 2, "layers of the encoder"),
            Option("encoder_dropout", "float", 0.0, "dropout inside the encoder"),
            _CHECKPOINTING),
        # Measured on SmolLM2-135M: at 1e-2 the MLP encoder's first Adam step throws the loss from
        # 7.2 to 13.6; 3e-4 descends steadily (12 steps: 6.3 -> 3.8).
        training=TrainingDefaults(learning_rate=3e-4, learning_rate_range=(1e-4, 1e-3)),
        inserts_input_tokens=True, works_on_quantized=True),
    MethodSpec(
        name="lora", peft_type=PeftType.LORA,
        summary="low-rank updates to attention projections; mergeable into the weights",
        tasks=TASKS, options=(*_LORA, _CHECKPOINTING),
        training=TrainingDefaults(learning_rate=5e-4, learning_rate_range=(2e-4, 1e-3)),
        has_lora=True, trains_padding_free=True,
        quantized_advice="use method='qlora' (load_model(..., quantization='4bit')) or load it without "
                         "quantization for 'lora'"),
    MethodSpec(
        name="qlora", peft_type=PeftType.LORA,
        summary="LoRA on a 4-bit quantised model: the least memory for the most capacity",
        tasks=TASKS, options=(*_LORA, Option(
            "gradient_checkpointing", "bool", None, "default: on (memory is what QLoRA is for; ~30% more "
            "compute); False keeps the activations instead")),
        training=TrainingDefaults(learning_rate=5e-4, learning_rate_range=(2e-4, 1e-3)),
        has_lora=True, needs_4bit=True, works_on_quantized=True, trains_padding_free=True),
    MethodSpec(
        name="prompt+lora", peft_type=PeftType.PROMPT_TUNING,
        summary="a soft prompt and LoRA trained jointly, saved as one adapter",
        tasks=("causal-lm",), options=(*_PROMPT, *_LORA, _CHECKPOINTING),
        training=TrainingDefaults(learning_rate=5e-4, learning_rate_range=(2e-4, 1e-3), prompt_learning_rate=3e-2),
        inserts_input_tokens=True, has_lora=True,
        quantized_advice="it needs a full-precision model: load it without quantization, or use qlora"),
)})
METHODS = tuple(SPECS)


def spec_of(method: str) -> MethodSpec:
    """The spec of ``method`` by name; ConfigError lists the known names."""
    if method not in SPECS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    return SPECS[method]


def spec_for(peft_type: PeftType, *, lora_inside: bool = False, four_bit: bool = False) -> MethodSpec:
    """The spec a PEFT adapter of ``peft_type`` belongs to.

    ``lora_inside``: the base model under a prompt adapter carries LoRA layers (a prompt+LoRA
    model). ``four_bit``: the base is 4-bit, so a LoRA adapter on it is QLoRA.
    """
    candidates = [spec for spec in SPECS.values() if spec.peft_type == peft_type and (four_bit or not spec.needs_4bit)]
    if not candidates:
        supported = ", ".join(dict.fromkeys(spec.peft_type.value for spec in SPECS.values()))
        raise ConfigError(f"{getattr(peft_type, 'value', peft_type)} adapters are not supported here; use one of "
                          f"the PEFT types {supported} (methods {', '.join(METHODS)})")
    with_lora = lora_inside or peft_type == PeftType.LORA
    return max(candidates, key=lambda spec: (spec.has_lora == with_lora, spec.needs_4bit))


def methods_for_task(task: str) -> list[str]:
    """Names of the methods that serve ``task`` (a dashboard's menu, an error's suggestions)."""
    return [spec.name for spec in SPECS.values() if task in spec.tasks]
