"""One exception type for every user-facing input error.

Messages are one line and name the offending field or file, e.g.
``config.classes[2].index: 1042 is outside the classifier's 1000 classes``.
"""


class DiffxaiError(Exception):
    """A user-facing error: bad config, missing file, unusable checkpoint."""

    def __init__(self, where: str, problem: str):
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")
