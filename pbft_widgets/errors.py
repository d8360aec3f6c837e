"""One exception hierarchy so users (and widgets) can catch our errors without catching bugs.

Every message names the fix, not only the problem. Each class also derives from the built-in
exception a Python user would expect (ValueError for bad values, FileNotFoundError for missing
paths, ...), so generic handlers keep working.
"""

from __future__ import annotations


class PbftError(Exception):
    """Base class of every error raised on purpose by pbft_widgets."""


class ConfigError(PbftError, ValueError):
    """An option has a value that cannot work (rank <= 0, unknown method, bf16 without support)."""


class TemplateError(PbftError, ValueError):
    """A prompt template is malformed or does not fit the data or the context window."""


class DataError(PbftError, ValueError):
    """A dataset is empty, mis-shaped, mis-labelled or not readable."""


class DependencyError(PbftError, ImportError):
    """An optional package needed for the requested feature is not installed."""


class ModelNotFoundError(PbftError, FileNotFoundError):
    """A model name, path or Hub id cannot be resolved to weights."""


class AdapterError(PbftError, ValueError):
    """A saved adapter is missing, corrupted, or belongs to another base model or method."""


class TrainingError(PbftError, RuntimeError):
    """A training run cannot start or continue (bad checkpoint, unrelated output directory)."""


class OutputExistsError(PbftError, FileExistsError):
    """A target directory already holds something that must not be overwritten silently."""
