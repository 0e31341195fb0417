"""Messages and conversations in the OpenAI chat format (text and image parts).

Images are referenced, not held: an `ImageRef` knows where the bytes live (a file, a row of a
parquet file, or bytes already in memory) and reads them only when a request is built, so a
30,000-sample run never holds every image at once. Its `digest` is the content hash used in
cache keys.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

Role = Literal["system", "user", "assistant"]


class _ParquetImageReader:
    """Reads one image cell from a parquet file, keeping the last few row groups decoded.

    Rows are read in order almost always, so a tiny LRU of row groups makes sequential access
    cost one row-group read per group instead of one per image.
    """

    _lock = threading.Lock()
    _files: ClassVar[dict[str, Any]] = {}
    _groups: ClassVar[OrderedDict[tuple[str, int, str], Any]] = OrderedDict()
    _max_groups = 4  # base and variant columns of the row groups in flight

    @classmethod
    def read(cls, path: str, row_index: int, column: str, item: int | None) -> bytes:
        import pyarrow.parquet as pq

        with cls._lock:
            pf = cls._files.get(path)
            if pf is None:
                pf = cls._files[path] = pq.ParquetFile(path)
            group, offset = 0, row_index
            meta = pf.metadata
            while group < meta.num_row_groups and offset >= meta.row_group(group).num_rows:
                offset -= meta.row_group(group).num_rows
                group += 1
            key = (path, group, column)
            table = cls._groups.get(key)
            if table is None:
                table = pf.read_row_group(group, columns=[column]).column(0)
                cls._groups[key] = table
                while len(cls._groups) > cls._max_groups:
                    cls._groups.popitem(last=False)
            else:
                cls._groups.move_to_end(key)
            cell = table[offset].as_py()
        if item is not None:
            cell = cell[item]
        if not isinstance(cell, dict) or cell.get("bytes") is None:
            # A cell that names a file is turned into a file reference by the loader, after
            # checking the file lies inside the dataset's folder: never read a path from here.
            raise ValueError("image cell holds no bytes")
        return bytes(cell["bytes"])


OPEN_DATASETS: dict[str, Any] = {}
"""`datasets.Dataset` objects opened in this process, by key, for `ImageRef.dataset`."""


class ImageRef(BaseModel):
    """Where an image's bytes live. Exactly one of `path`, `parquet`, `dataset` or `data` is set."""

    model_config = ConfigDict(frozen=True)

    path: str | None = None
    """A file on disk (JSONL datasets, captions-from-file)."""
    parquet: tuple[str, int, str, int | None] | None = None
    """(parquet file, row index in file, column, list index for list columns or None)."""
    dataset: tuple[str, int, str, int | None] | None = None
    """(key in OPEN_DATASETS, row index, column, list index or None); the column is undecoded."""
    data: bytes | None = Field(default=None, repr=False)
    """Bytes already in memory (decoded `datasets` rows, tests)."""
    _digest: str | None = PrivateAttr(default=None)

    def load_bytes(self) -> bytes:
        """Read the image's encoded bytes (PNG, JPEG, ...)."""
        if self.data is not None:
            return self.data
        if self.path is not None:
            return Path(self.path).read_bytes()
        if self.parquet is not None:
            return _ParquetImageReader.read(*self.parquet)
        if self.dataset is not None:
            key, row, column, item = self.dataset
            cell = OPEN_DATASETS[key][row][column]
            cell = cell[item] if item is not None else cell
            if not cell.get("bytes"):
                raise ValueError("image cell holds no bytes")  # paths: see _ParquetImageReader
            return bytes(cell["bytes"])
        raise ValueError("ImageRef points nowhere")

    def digest(self) -> str:
        """sha256 of the image bytes, computed once."""
        if self._digest is None:
            self._digest = hashlib.sha256(self.load_bytes()).hexdigest()
        return self._digest

    def describe(self) -> str:
        """Where the image comes from, for error messages."""
        if self.path is not None:
            return self.path
        if self.parquet is not None:
            f, row, col, item = self.parquet
            return f"{f} row {row} column {col}" + (f"[{item}]" if item is not None else "")
        if self.dataset is not None:
            key, row, col, item = self.dataset
            return f"{key} row {row} column {col}" + (f"[{item}]" if item is not None else "")
        return "<in-memory image>"


def sniff_mime(data: bytes) -> str:
    """Image MIME type from the magic bytes; raises ValueError for anything unrecognised."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError("not a PNG, JPEG, GIF or WebP image")


def data_uri(image: ImageRef) -> str:
    """The image as a base64 `data:` URI, as OpenAI-compatible servers accept in `image_url`."""
    raw = image.load_bytes()
    return f"data:{sniff_mime(raw)};base64,{base64.b64encode(raw).decode('ascii')}"


class TextPart(BaseModel):
    """A text content part."""

    model_config = ConfigDict(frozen=True)
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image content part; the bytes stay where `image` points until a request is built."""

    model_config = ConfigDict(frozen=True)
    type: Literal["image"] = "image"
    image: ImageRef


Part = TextPart | ImagePart


class Message(BaseModel):
    """One chat message. `content` is plain text or a list of parts (text and images)."""

    model_config = ConfigDict(frozen=True)
    role: Role
    content: str | tuple[Part, ...]

    @property
    def text(self) -> str:
        """The message's text, images left out."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> tuple[ImageRef, ...]:
        """The images this message carries."""
        if isinstance(self.content, str):
            return ()
        return tuple(p.image for p in self.content if isinstance(p, ImagePart))

    def key_view(self) -> dict[str, Any]:
        """A JSON-able view for cache keys: images by digest, not bytes."""
        if isinstance(self.content, str):
            return {"role": self.role, "content": self.content}
        parts: list[dict[str, str]] = []
        for p in self.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            else:
                parts.append({"type": "image", "sha256": p.image.digest()})
        return {"role": self.role, "content": parts}


Conversation = tuple[Message, ...]


def user(text: str, image: ImageRef | None = None) -> Message:
    """A user message; with an image, the image part comes first, then the text."""
    if image is None:
        return Message(role="user", content=text)
    return Message(role="user", content=(ImagePart(image=image), TextPart(text=text)))


def assistant(text: str) -> Message:
    """An assistant message."""
    return Message(role="assistant", content=text)


def strip_images(conversation: Conversation) -> Conversation:
    """The same conversation with every image part removed."""
    return tuple(Message(role=m.role, content=m.text) if m.images else m for m in conversation)


class GenParams(BaseModel):
    """Generation parameters of one call. Official defaults: temperature 0.1, 128 new tokens."""

    model_config = ConfigDict(frozen=True)
    temperature: float = 0.1
    max_tokens: int = 128
    seed: int | None = None
    """Sampling seed, for several distinct samples of one request (e.g. best-of-N); None: the
    server's default. Part of the cache key, so each seed is its own call."""


class Reply(BaseModel):
    """What a target answered to one call."""

    model_config = ConfigDict(frozen=True)
    version: int = 1
    text: str
    """The reply text the user (and the judge) sees."""
    prompt_tokens: int | None = None
    """Prompt tokens, when the target reports them."""
    completion_tokens: int | None = None
    """Generated tokens, when the target reports them."""
    latency_s: float = 0.0
    """Wall time of the call in seconds (0 for cached replies' replays)."""
    blocked_by: str | None = None
    """Name of the guardrail that blocked this turn, if one did."""
    block_reason: str | None = None
    """Why it blocked (e.g. Llama Guard categories)."""
    guard_calls: int = 0
    """Model calls or forward passes a guardrail made beyond the answering call."""
    guard_tokens: int = 0
    """Tokens those extra calls generated."""
    guard_latency_s: float = 0.0
    """Wall time the guardrail added to this call (total minus the answering call)."""
    cut_at: int | None = None
    """Set when the server's reply was longer than the cap (`TargetOptions.max_reply_chars`):
    `text` holds only its first `cut_at` characters. None: the reply is whole."""
