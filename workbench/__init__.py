"""LLM Objectives Workbench: train small language models and look inside them.

The package is the single source of truth; the notebooks and the dashboard only call it.
"""

from .config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, get_preset, PRESETS
from .paths import workbench_home

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "RunConfig", "TrainConfig", "get_preset", "PRESETS",
           "workbench_home", "__version__"]
