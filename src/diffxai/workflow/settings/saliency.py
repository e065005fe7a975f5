"""Settings of the saliency stage's rules (see :mod:`diffxai.workflow.params`)."""

from __future__ import annotations
