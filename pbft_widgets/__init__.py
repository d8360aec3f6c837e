"""pbft_widgets: prompt-based fine-tuning of language models, from plain Python or Jupyter widgets.

The core is plain Python (models, templates, methods, training, generation, label-word scoring,
calibration, evaluation with confidence intervals, serve, export, inspection);
`pbft_widgets.widgets` holds thin ipywidgets views over it. What each method supports lives in
`pbft_widgets.registry`. No name here shadows a submodule: `pbft_widgets.train`
is the function, `pbft_widgets.training` its module.
"""

from .adapters import load_adapter, save_adapter
from .calibration import calibrate
from .comparison import compare, to_markdown
from .errors import (AdapterError, ConfigError, DataError, DependencyError, ModelNotFoundError, OutputExistsError,
                     PbftError, TemplateError, TrainingError)
from .evaluation import evaluate
from .export import export_recipe
from .methods import apply_method, describe_methods
from .models import LoadedModel, ModelInfo, list_models, load_model, load_tokenizer
from .registry import METHODS
from .serve import AdapterBank
from .templates import PromptTemplate
from .events import TrainingControl
from .training import train
from .uncertainty import over_seeds
from .verbalizer import Verbalizer

__all__ = [
    "METHODS", "AdapterBank", "AdapterError", "ConfigError", "DataError", "DependencyError", "LoadedModel",
    "ModelInfo", "ModelNotFoundError", "OutputExistsError", "PbftError", "PromptTemplate", "TemplateError",
    "TrainingControl", "TrainingError", "Verbalizer", "apply_method", "calibrate", "compare", "describe_methods", "evaluate",
    "export_recipe", "list_models", "load_adapter", "load_model", "load_tokenizer", "over_seeds", "save_adapter",
    "to_markdown", "train",
]
__version__ = "0.1.0"
