"""TrainingDashboard: pick a method, start/stop a run, and watch loss, metrics and throughput live.

Under the readout, "Is it learning?" lists what :mod:`pbft_widgets.learning_checks` finds in the
run's events as they arrive: a learning rate far outside the method's range, a flat loss or
validation score, trainable weights that have not moved, a zero gradient.

The dashboard is a listener on :func:`pbft_widgets.training.train`; applying the method and training
are the core's. Applying a PEFT method changes the base model in place (layers are injected or it
is wrapped), so one dashboard trains one run per base model: after a finished run, Start refuses
with a message instead of stacking a second adapter on the first. A stopped run can be continued
with Start (it resumes from the last complete checkpoint).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from ..errors import ConfigError, PbftError
from ..evaluation import label_word_metric
from ..inspection import snapshot_prompt
from ..learning_checks import learning_warnings
from ..methods import PeftSetup, apply_method
from ..registry import MethodSpec, Option, methods_for_task, spec_of
from ..events import TrainEvent, TrainingControl
from ..training import TrainResult, train
from ._common import MessageBox, View, format_bytes

_COUNTERS = ("epoch", "num_tokens")  # reported with eval results but not metrics worth a curve
_AUTO = "auto"  # how a default of None ("chosen automatically") is shown


def option_control(option: Option) -> w.Widget:
    """A control for one apply_method option, built from its type; its tooltip is the option's help."""
    common = {"description": option.name, "tooltip": option.help}
    if option.kind == "choice" or (option.kind == "bool" and option.default is None):
        values = option.choices or (True, False)
        choices = ([(_AUTO, None)] if option.default is None else []) + [(str(v), v) for v in values]
        return w.Dropdown(options=choices, value=option.default, **common)
    if option.kind == "bool":
        return w.Checkbox(value=option.default, indent=False, **common)
    if option.kind == "int" and option.default is not None:
        return w.IntText(value=option.default, **common)
    if option.kind == "float" and option.default is not None:
        return w.FloatText(value=option.default, **common)
    return w.Text(value="", placeholder=_AUTO if option.default is None else str(option.default), **common)


def option_value(option: Option, control: w.Widget) -> Any:
    """The typed value a control holds (free text is read by the option's own type)."""
    return option.from_text(control.value) if isinstance(control, w.Text) else control.value


class TrainingDashboard(View):
    """Method picker, options with their defaults, Start/Stop, progress, live curves and readouts.

    ``template`` may be a PromptTemplate or a PromptEditor (its current template is read at Start).
    Extra keyword arguments go to ``train()`` (e.g. ``eval_every``, ``metric_fn``, ``smoke``). A causal LM
    with a verbalizer template and ``eval_rows`` shows validation accuracy, macro-F1 and ECE by
    label-word scoring at every evaluation unless another ``metric_fn`` is given.
    ``background=True`` trains in a thread so the notebook stays responsive; ``.wait()`` joins it.
    After a run, ``.result`` is the TrainResult, ``.setup`` the PeftSetup, ``.history`` the events.
    """

    shows_progress = True  # train() leaves out its own bar: this view is the progress

    def __init__(self, model: Any, tokenizer: Any, train_rows: Sequence[Mapping[str, Any]], *,
                 template: Any = None, eval_rows: Sequence[Mapping[str, Any]] | None = None,
                 task: str = "causal-lm", output_dir: str = "outputs/dashboard", methods: Sequence[str] | None = None,
                 max_steps: int = 200, batch_size: int = 8, background: bool = True, **train_kwargs: Any) -> None:
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.train_rows, self.eval_rows = list(train_rows), eval_rows
        self.template_source = template
        self.output_dir, self.background, self.train_kwargs = output_dir, background, train_kwargs
        self.setup: PeftSetup | None = None
        self.result: TrainResult | None = None
        self.history: list[TrainEvent] = []
        self.error: BaseException | None = None
        self.control = TrainingControl()
        self.thread: threading.Thread | None = None
        available = methods_for_task(task)
        names = list(methods or available)
        unknown = [m for m in names if m not in available]
        if unknown:
            raise ConfigError(f"methods {unknown} do not exist or do not support task {task!r}; choose from "
                              f"{', '.join(available)}")
        self._option_controls: dict[str, dict[str, w.Widget]] = {}

        self.method = w.Dropdown(options=names, value=names[0], description="Method")
        self.summary = w.HTML()
        self.options = w.VBox()
        self.learning_rate = w.FloatText(description="lr")
        self.max_steps = w.IntText(max_steps, description="max_steps")
        self.batch_size = w.IntText(batch_size, description="batch size")
        self.start_button = w.Button(description="Start", button_style="primary", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=max_steps, description="0 steps")
        self.readout = w.HTML()
        self.health = w.HTML()  # "is it learning?": plain warnings from learning_checks, updated live
        self.report = w.HTML()
        self.message = MessageBox()
        self.loss_figure = go.FigureWidget(layout=dict(title="loss", height=280, xaxis_title="step",
                                                       margin=dict(l=40, r=10, t=40, b=40)))
        self.loss_figure.add_scatter(x=[], y=[], mode="lines+markers", name="train loss")
        self.loss_figure.add_scatter(x=[], y=[], mode="lines+markers", name="eval loss")
        self.metric_figure = go.FigureWidget(layout=dict(title="eval metrics", height=280, xaxis_title="step",
                                                         margin=dict(l=40, r=10, t=40, b=40)))

        self.method.observe(self._show_method, names="value")
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        settings = w.VBox([self.method, self.summary, self.options, self.learning_rate, self.max_steps,
                           self.batch_size, w.HBox([self.start_button, self.stop_button])],
                          layout=w.Layout(width="36%"))
        live = w.VBox([self.message.html, self.progress, self.readout, self.health, self.report,
                       # the two curves wrap below each other where the panel is too narrow for both
                       w.HBox([self.loss_figure, self.metric_figure], layout=w.Layout(flex_flow="row wrap"))],
                      layout=w.Layout(width="64%"))
        self.widget = w.HBox([settings, live])
        self._show_method()

    # ------------------------------------------------------------------------- actions
    def start(self) -> None:
        """Apply the method (first run only) and train; problems are shown inline, never raised."""
        self.message.clear()
        if self.running:
            self.message.note("a run is in progress; press Stop first")
            return
        try:
            if self.learning_rate.value <= 0:
                raise ConfigError(f"lr={self.learning_rate.value}; use a positive learning rate, e.g. "
                                  f"{self.spec.training.learning_rate}")
            template = getattr(self.template_source, "template", self.template_source)  # editor or template
            setup, resume = self._setup_for_start(template)
        except PbftError as exc:
            self.message.error(exc)
            return
        self.control = TrainingControl()
        self._show_health()
        self.progress.max = max(1, self.max_steps.value)
        self.progress.bar_style = ""
        self._set_running(True)
        if self.background:
            self.thread = threading.Thread(target=self._run, args=(setup, template, resume), daemon=True)
            self.thread.start()
        else:
            self._run(setup, template, resume)

    def stop(self) -> None:
        """Ask the run to stop after the current step; it keeps its last complete checkpoint."""
        if not self.running:
            self.message.note("no run in progress (a run started with background=False cannot be stopped)")
            return
        self.control.stop()
        self.stop_button.disabled = True
        self.message.note("stopping after the current step (a checkpoint is saved)…")

    def wait(self, timeout: float | None = None) -> TrainResult | None:
        """Block until a background run ends (or ``timeout`` seconds pass); returns ``.result``."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.result

    @property
    def running(self) -> bool:
        """Whether a background run is in progress."""
        return self.thread is not None and self.thread.is_alive()

    @property
    def spec(self) -> MethodSpec:
        """The registry's description of the selected method."""
        return spec_of(self.method.value)

    def method_options(self) -> dict[str, Any]:
        """The options the controls hold for the selected method (None = chosen automatically)."""
        controls = self._option_controls[self.method.value]
        return {option.name: option_value(option, controls[option.name]) for option in self.spec.options}

    # ------------------------------------------------------------------------- internals
    def _setup_for_start(self, template: Any) -> tuple[PeftSetup, bool]:
        """The PeftSetup to train and whether to resume; refuses to stack a second adapter."""
        method = self.method.value
        if self.setup is not None and self.result is not None and not self.result.stopped_by_user:
            raise ConfigError(f"this dashboard already finished a {self.setup.method} run and the base model now "
                              f"carries that adapter (saved at {self.result.adapter_path}); load a fresh base "
                              "model and create a new dashboard for another run")
        if self.setup is not None and self.setup.method != method:
            raise ConfigError(f"the base model already carries the {self.setup.method} adapter of this "
                              f"dashboard; select {self.setup.method} to continue it, or load a fresh base model "
                              f"for {method}")
        if self.setup is not None:  # a stopped run resumes; a failed start retries the same setup
            return self.setup, self.result is not None
        options = {k: v for k, v in self.method_options().items() if v is not None}
        self.setup = apply_method(self.model, method, tokenizer=self.tokenizer, task=self.task,
                                  template=template, **options)
        if self.task == "causal-lm" and self.spec.inserts_input_tokens:
            snapshot_prompt(self.setup.model)  # so NeighbourExplorer can show drift from the start
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.setup.report.notes)
        self.report.value = f"<div>{html.escape(str(self.setup.report))}</div><ul>{notes}</ul>"
        return self.setup, False

    def _run(self, setup: PeftSetup, template: Any, resume: bool) -> None:
        try:
            options = dict(self.train_kwargs)
            if self.eval_rows and self.task == "causal-lm" and getattr(template, "verbalizer", None) is not None:
                options.setdefault("metric_fn", label_word_metric(self.tokenizer, template, self.eval_rows))
            self.result = train(setup, self.train_rows, tokenizer=self.tokenizer, template=template,
                                eval_rows=self.eval_rows, output_dir=self.output_dir, max_steps=self.max_steps.value,
                                batch_size=self.batch_size.value, learning_rate=self.learning_rate.value,
                                listeners=[self._on_event], control=self.control, resume=resume, **options)
        except Exception as exc:  # a background thread has nowhere else to report to
            self.error = exc
            self.progress.bar_style = "danger"
            self.message.error(f"training failed: {exc}" if isinstance(exc, PbftError)
                               else f"training failed ({type(exc).__name__}): {exc}")
            if not self.background and not isinstance(exc, PbftError):
                raise
        else:
            self.error = None
            stopped = self.result.stopped_by_user
            self.progress.bar_style = "warning" if stopped else "success"
            where = f"last complete checkpoint {self.result.last_checkpoint}; adapter {self.result.adapter_path}"
            self.message.note(f"stopped by user; press Start to resume ({where})" if stopped
                              else f"finished ({where})")
        finally:
            self._set_running(False)
            self.refresh_static()  # the saved output's image shows the finished curves, not empty axes

    def _on_event(self, event: TrainEvent) -> None:
        self.history.append(event)
        self.progress.max = event.max_steps
        self.progress.value = min(event.step, event.max_steps)
        self.progress.description = f"{event.step}/{event.max_steps}"
        if event.kind in ("log", "eval"):
            self._show_health()
        if event.kind == "log":
            _extend(self.loss_figure, "train loss", event.step, event.loss)
            self._show_readout(event)
        elif event.kind == "eval":
            for name, value in event.metrics.items():
                if name in _COUNTERS:
                    continue
                figure = self.loss_figure if name == "loss" else self.metric_figure
                _extend(figure, "eval loss" if name == "loss" else name, event.step, value)

    def _show_readout(self, event: TrainEvent) -> None:
        rate = "–" if event.tokens_per_second is None else f"{event.tokens_per_second:,.0f}"
        lr = "–" if event.learning_rate is None else f"{event.learning_rate:.2e}"
        grad = "" if event.grad_norm is None else f" · grad norm {event.grad_norm:.3g}"
        moved = "" if event.relative_drift is None else f" · moved {event.relative_drift:.1%} from the start"
        self.readout.value = (f"step {event.step}/{event.max_steps} · loss {event.loss:.4f} · lr {lr}{grad}{moved} · "
                              f"{rate} tokens/s · memory {format_bytes(event.memory_bytes)} · "
                              f"{event.elapsed_seconds:.1f} s")

    def warnings(self) -> list[str]:
        """What `learning_checks.learning_warnings` says about this run so far (the box under the readout)."""
        return learning_warnings(self.history, self.spec, learning_rate=self.learning_rate.value)

    def _show_health(self) -> None:
        found = self.warnings()
        self.health.value = ("" if not found else "<div style='color:#8a4b00'><b>Is it learning?</b><ul>"
                             + "".join(f"<li>{html.escape(text)}</li>" for text in found) + "</ul></div>")

    def _set_running(self, running: bool) -> None:
        self.start_button.disabled = running
        self.stop_button.disabled = not running
        self.method.disabled = running

    def _show_method(self, change: Any = None) -> None:
        spec = self.spec
        if spec.name not in self._option_controls:
            self._option_controls[spec.name] = {option.name: option_control(option) for option in spec.options}
        self.options.children = list(self._option_controls[spec.name].values())
        self.learning_rate.value = spec.training.learning_rate
        self.summary.value = f"<i>{html.escape(spec.summary)}</i>"


def _extend(figure: go.FigureWidget, name: str, x: float, y: float | None) -> None:
    """Append one point to the trace called ``name`` (added on first use)."""
    if y is None:
        return
    trace = next((t for t in figure.data if t.name == name), None)
    if trace is None:
        figure.add_scatter(x=[x], y=[y], mode="lines+markers", name=name)
        return
    with figure.batch_update():
        trace.x = (*(trace.x or ()), x)
        trace.y = (*(trace.y or ()), y)
