"""User-facing errors: :class:`DiffxaiError` is one line ``where: problem`` (a config field, file or
model, then what is wrong); NaN/Inf checks of model outputs; one-line summaries of library errors."""

from __future__ import annotations


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


def short_error(exc: BaseException, limit: int = 240) -> str:
    """One line from a library exception: the first line, without the advice that diffusers and
    torch append, and for ``load_state_dict`` failures a summary of what does not fit."""
    import re

    text = str(exc).strip() or type(exc).__name__
    if text.startswith("Error(s) in loading state_dict"):
        parts = []
        for kind, label in (("Missing key(s)", "missing"), ("Unexpected key(s)", "unexpected")):
            m = re.search(re.escape(kind) + r" in state_dict: (.*)", text)
            if m:
                keys = re.findall(r'"([^"]+)"', m.group(1))
                parts.append(f"{len(keys)} {label} keys (e.g. {keys[0]})" if keys else label + " keys")
        sizes = re.findall(
            r"size mismatch for ([^:]+): copying a param with shape torch.Size\((\[[^\]]*\])\) "
            r"from checkpoint, the shape in current model is torch.Size\((\[[^\]]*\])\)",
            text,
        )
        if sizes:
            name, ck, cur = sizes[0]
            parts.append(f"{len(sizes)} shape mismatches (e.g. {name}: checkpoint {ck}, model {cur})")
        return ("weights do not fit the architecture: " + "; ".join(parts))[:limit]
    if text.startswith("Weights only load failed"):
        return "not a plain tensor state dict (refused: unpickling could run code; save it with safetensors)"
    line = text.splitlines()[0]
    for advice in (" If you want", " For more information", " Re-running", " In PyTorch"):
        line = line.split(advice)[0]
    line = line.strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."
