"""Does an OpenAI-compatible server see images? One probe pair before the run decides.

A text-only model behind an OpenAI-compatible server often answers 200 to a request with
`image_url` parts and simply drops them (`transformers serve` with SmolLM2 does: the same
`prompt_tokens` with and without the image). A dialogue whose image was dropped must never be
scored as if the model had seen it, so a target whose spec ends in `?images=probe` sends the
same tiny request twice before the run, once without and once with a small image:

- the request with the image is refused (a 4xx other than 401/403/404/429) while the one
  without is answered: the server rejects images, the target is text-only;
- both are answered and report the same `prompt_tokens`: the image was dropped, text-only;
- the image adds prompt tokens: the server sees images;
- anything else (an error on the text-only request, no `usage` in the answers, a timeout) is
  inconclusive: images are sent as before, and the report says why nothing was decided.

The probe costs two requests of one token each. Its verdict is `ImageProbe`; the server's
words in it are quoted through `textsafety` (redacted, neutralised) like every error's.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from pytest_mtmcs.targets.openai_http import ERROR_BODY_BYTES, error_text, quote

__all__ = ["PROBE_SIZE", "ImageProbe", "probe_bodies", "probe_images", "verdict"]

PROBE_SIZE = 64
"""Width and height of the probe image in pixels: big enough that a vision model spends
tokens on it, small enough to cost nothing to send."""
PROBE_TEXT = "What colour is this picture? Answer with one word."


@dataclass(frozen=True)
class ImageProbe:
    """The probe's verdict: `sees_images` True, False (text-only) or None (inconclusive), and
    `detail`, what was observed (e.g. "ignores images: prompt_tokens 37 with a 64x64 image and
    37 without"), for the skip reason and the report."""

    sees_images: bool | None
    detail: str


@dataclass(frozen=True)
class _Answer:
    status: int | None
    prompt_tokens: int | None
    message: str


def _png() -> bytes:
    from PIL import Image

    img = Image.new("RGB", (PROBE_SIZE, PROBE_SIZE), (200, 30, 30))
    for x in range(0, PROBE_SIZE, 8):  # a pattern, so no server can shrink it to one pixel
        for y in range(PROBE_SIZE):
            img.putpixel((x, y), (20, 20, 220))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def probe_bodies(model: str, limit_name: str) -> tuple[bytes, bytes]:
    """(request without the image, the same request with it): JSON bodies of one token each,
    at temperature 0."""
    import base64

    text = {"type": "text", "text": PROBE_TEXT}
    image = {"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(_png()).decode("ascii")}}
    bodies = []
    for parts in ([text], [image, text]):
        bodies.append(json.dumps({"model": model, "messages": [{"role": "user", "content": parts}],
                                  "temperature": 0, limit_name: 1}).encode())
    return bodies[0], bodies[1]


def _prompt_tokens(body: bytes) -> int | None:
    try:
        usage = json.loads(body.decode("utf-8")).get("usage")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ask(client: Any, url: str, body: bytes) -> _Answer:
    import httpx

    try:
        with client.stream("POST", f"{url}/chat/completions", content=body,
                           headers={"Content-Type": "application/json"}) as resp:
            data = b""
            for chunk in resp.iter_bytes():
                data += chunk
                if len(data) > ERROR_BODY_BYTES * 4:
                    break
            status, ctype = resp.status_code, resp.headers.get("content-type", "")
    except httpx.HTTPError as exc:
        return _Answer(None, None, quote(f"{type(exc).__name__}: {exc}", 120))
    if 200 <= status < 300:
        return _Answer(status, _prompt_tokens(data), "")
    return _Answer(status, None, error_text(data, ctype))


def verdict(without: _Answer, with_image: _Answer) -> ImageProbe:
    """What the two answers say about the server (see the module docstring)."""
    if without.status is None or not 200 <= without.status < 300:
        what = f"HTTP {without.status}" if without.status is not None else "no answer"
        return ImageProbe(None, f"probe inconclusive: the request without an image got {what}"
                          f"{': ' + without.message if without.message else ''}")
    size = f"a {PROBE_SIZE}x{PROBE_SIZE} image"
    if with_image.status is not None and 400 <= with_image.status < 500 and \
            with_image.status not in (401, 403, 404, 429):
        return ImageProbe(False, f"rejects images: HTTP {with_image.status} for a request with "
                          f"{size}, 200 without it ({with_image.message})")
    if with_image.status is None or not 200 <= with_image.status < 300:
        what = f"HTTP {with_image.status}" if with_image.status is not None else "no answer"
        return ImageProbe(None, f"probe inconclusive: the request with {size} got {what}"
                          f"{': ' + with_image.message if with_image.message else ''}")
    a, b = with_image.prompt_tokens, without.prompt_tokens
    if a is None or b is None:
        return ImageProbe(None, "probe inconclusive: the server reports no usage.prompt_tokens, "
                          "so whether it reads images cannot be told (declare ?images=no for a "
                          "text-only model)")
    if a <= b:
        return ImageProbe(False, f"ignores images: prompt_tokens {a} with {size} and {b} "
                          "without (the image was dropped)")
    return ImageProbe(True, f"sees images: prompt_tokens {a} with {size}, {b} without")


def probe_images(url: str, model: str, headers: dict[str, str], limit_name: str,
                 timeout_s: float) -> ImageProbe:
    """Send the probe pair to the server at `url` (a base URL ending in /v1) and judge it.
    Blocking (a sync client): called once, before the run, where nothing else waits."""
    import httpx

    without_body, with_body = probe_bodies(model, limit_name)
    with httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                      headers=headers) as client:
        without = _ask(client, url, without_body)
        with_image = _ask(client, url, with_body) if without.status == 200 else without
    return verdict(without, with_image)
