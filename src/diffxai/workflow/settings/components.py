"""Settings of the components stage's rules (see :mod:`diffxai.workflow.params`)."""

from __future__ import annotations
