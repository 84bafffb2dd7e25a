"""LLM Objectives Workbench: train small language models and look inside them.

The package is the single source of truth; the notebooks and the dashboard only call it.
"""

from .config import ConfigError, DataConfig, ModelConfig, ObjectiveConfig, RunConfig, TrainConfig
from .overrides import apply_overrides
from .paths import workbench_home
from .presets import PRESETS, get_preset

__version__ = "0.2.0"

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "ObjectiveConfig", "RunConfig", "TrainConfig",
           "apply_overrides", "get_preset", "PRESETS", "workbench_home", "__version__"]
