"""One module per stage holding its rules' params builders (see :mod:`diffxai.workflow.params`).

Importing this package registers every builder.
"""

from diffxai.workflow.settings import attribution, components, foundation, report, saliency, schedules  # noqa: F401
