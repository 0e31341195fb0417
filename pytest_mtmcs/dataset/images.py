"""The images of the benchmark data, checked before anything is sent: file paths confined to
the dataset's folder, bytes that decode as an image a model server accepts.

A dataset is input from outside. An image path in a JSONL line (or in a parquet cell that holds
a path instead of bytes) is a request to read a file and send it to a model server, so it must
stay inside the dataset's folder; and an image that does not decode would only make the server
fail (and the run blame the server), so it is a data error before the first call.
"""

from __future__ import annotations

import io
from pathlib import Path

from pytest_mtmcs.chat import sniff_mime

MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Larger image files are refused: no model server accepts them, and every call holds one."""


class ImageProblem(ValueError):
    """Why an image path or image bytes are refused (the caller adds file, row and field)."""


def confine(text: str, base: Path, root: Path | None = None) -> Path:
    """The file `text` names, relative to `base` (absolute paths too), resolved through every
    symbolic link; `ImageProblem` unless it is a regular file inside `root` (default: `base`)."""
    if "\x00" in text:
        raise ImageProblem(f"the image path {text!r} contains a NUL byte")
    root = (root or base).resolve()
    try:
        path = (base / text).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise ImageProblem(f"the image path {text!r} cannot be resolved ({exc})") from None
    if not path.is_relative_to(root):
        raise ImageProblem(f"the image path {text!r} leads outside the dataset's folder {root} "
                           f"(to {path}); image paths must stay inside it")
    if path.is_dir():
        raise ImageProblem(f"the image path {text!r} is a directory ({path}), not an image file")
    if not path.exists():
        raise ImageProblem(f"image file {path} does not exist")
    if not path.is_file():
        raise ImageProblem(f"the image path {text!r} is not a regular file ({path})")
    return path


def read_image_file(path: Path) -> bytes:
    """The bytes of a confined image file, refusing files too large to send."""
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise ImageProblem(f"image file {path} is {size / 2**20:.0f} MiB; the largest "
                               f"accepted is {MAX_IMAGE_BYTES // 2**20} MiB")
        return path.read_bytes()
    except OSError as exc:
        raise ImageProblem(f"cannot read image file {path} ({exc.strerror or exc})") from None


def verify_image(data: bytes) -> str:
    """The image's MIME type; `ImageProblem` unless the bytes are a PNG, JPEG, GIF or WebP
    image whose structure decodes (PIL's `verify`: headers, chunks and checksums)."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageProblem(f"the image is {len(data) / 2**20:.0f} MiB; the largest accepted is "
                           f"{MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        mime = sniff_mime(data)
    except ValueError as exc:
        raise ImageProblem(f"cannot read the image: {exc} (starts with {data[:8]!r})") from None
    from PIL import Image, UnidentifiedImageError

    kind = mime.split("/")[1].upper()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except UnidentifiedImageError:
        raise ImageProblem(f"the image starts like a {kind} file but is not one (PIL cannot "
                           "identify it); export the image again") from None
    except Exception as exc:  # PIL raises a zoo of kinds (SyntaxError, OSError, struct.error...)
        raise ImageProblem(f"the image starts like a {kind} file but does not decode "
                           f"({type(exc).__name__}: {str(exc)[:120]}); export the image again"
                           ) from None
    return mime
