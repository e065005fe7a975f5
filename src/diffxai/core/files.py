"""Image files of a class folder: listing (by suffix, sorted), a readability check and the folder
of a class entry; every problem is a one-line :class:`~diffxai.core.errors.DiffxaiError` naming the path."""

from __future__ import annotations

from pathlib import Path

from diffxai.core.errors import DiffxaiError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files of a class folder; a missing or empty folder is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DiffxaiError(str(folder), "image folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DiffxaiError(str(folder), f"image folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def check_image(path: str | Path) -> None:
    """Raise a one-line error naming ``path`` if it is empty or not a readable image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DiffxaiError(str(path), "image file does not exist")
    if path.stat().st_size == 0:
        raise DiffxaiError(str(path), "image file is empty")
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DiffxaiError(str(path), f"not a readable image ({type(exc).__name__})") from None


def class_folder(config: dict, cls: dict) -> Path:
    if cls.get("folder"):
        return Path(cls["folder"])
    return Path(config["data"]["root"]) / cls["name"]
