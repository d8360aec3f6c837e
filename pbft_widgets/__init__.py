"""pbft_widgets: prompt-based fine-tuning of language models, from plain Python or Jupyter widgets.

The core is plain Python (models, templates, methods, train, evaluation, serve, export, inspection);
`pbft_widgets.widgets` holds thin ipywidgets views over it.
"""

from .adapters import load_adapter, save_adapter
from .errors import (AdapterError, ConfigError, DataError, DependencyError, ModelNotFoundError, OutputExistsError,
                     PbftError, TemplateError, TrainingError)
from .evaluation import compare, evaluate, to_markdown
from .export import export_recipe
from .methods import METHODS, apply_method, describe_methods
from .models import LoadedModel, ModelInfo, list_models, load_model, load_tokenizer
from .serve import AdapterBank
from .templates import PromptTemplate, Verbalizer
from .train import TrainingControl, train

__all__ = [
    "METHODS", "AdapterBank", "AdapterError", "ConfigError", "DataError", "DependencyError", "LoadedModel",
    "ModelInfo", "ModelNotFoundError", "OutputExistsError", "PbftError", "PromptTemplate", "TemplateError",
    "TrainingControl", "TrainingError", "Verbalizer", "apply_method", "compare", "describe_methods", "evaluate",
    "export_recipe", "list_models", "load_adapter", "load_model", "load_tokenizer", "save_adapter", "to_markdown",
    "train",
]
__version__ = "0.1.0"
