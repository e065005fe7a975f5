"""The experiment's configuration: schema (package data), defaults, every check, the typed view.

Torch-free: the workflow imports this layer to plan a run (``snakemake -n`` never imports torch).
Import from the modules (``diffxai.config.checks``, ``.load``, ``.experiment``): this package
imports none of them, so a job whose driver reads the typed view (``config.experiment``) does not
have the checks in its code trigger, and a new config check reruns nothing.
"""
