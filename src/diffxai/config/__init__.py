"""The experiment's configuration: schema (package data), defaults, every check, the typed view.

Torch-free: the workflow imports this layer to plan a run (``snakemake -n`` never imports torch).
"""

from diffxai.config.checks import check_config, validate_config
from diffxai.config.load import load_config, load_schema

__all__ = ["check_config", "load_config", "load_schema", "validate_config"]
