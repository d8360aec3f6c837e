"""pbft_widgets: prompt-based fine-tuning of language models, from plain Python or Jupyter widgets."""

from .errors import (AdapterError, ConfigError, DataError, DependencyError, ModelNotFoundError, PbftError,
                     TemplateError, TrainingError)
from .models import LoadedModel, ModelInfo, list_models, load_model, load_tokenizer

__all__ = [
    "AdapterError", "ConfigError", "DataError", "DependencyError", "LoadedModel", "ModelInfo",
    "ModelNotFoundError", "PbftError", "TemplateError", "TrainingError", "list_models", "load_model",
    "load_tokenizer",
]
__version__ = "0.1.0"
