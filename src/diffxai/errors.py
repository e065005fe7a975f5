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


def require_finite(tensor, where: str, what: str) -> None:
    """Raise a one-line :class:`DiffxaiError` if ``tensor`` holds NaN or Inf.

    ``where`` names the model or file that produced it, ``what`` the quantity (e.g. "logits").
    """
    import torch

    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        n_bad = int(bad.flatten(1).any(1).sum()) if tensor.ndim > 1 else int(bad.sum())
        raise DiffxaiError(where, f"produced NaN/Inf {what} for {n_bad} of {tensor.shape[0]} inputs")
