"""Specs of OpenAI-compatible targets, read with a URL parser: `openai:MODEL`,
`openai+URL:MODEL`, `openai+URL1|URL2:MODEL` and `openai+file:PATH:MODEL`.

A base URL is `http(s)://HOST[:PORT][/PATH]`; HOST may be an IPv6 literal in brackets
(`http://[::1]:8000/v1`). Its path holds no ':', so the model is everything after the first
':' that follows the last URL's host, port and path; a model name may itself hold ':' and '/'
(`llama3.2-vision:11b`, `Qwen/Qwen3:8b`). A URL cannot hold a raw '|' (RFC 3986 wants it
percent-encoded), so '|' separates replicas. A spec without a model, or with a URL that does
not parse, is a SpecError that shows a correct spec.

A spec may end in `?images=MODE` (`split_options`): how the target treats images. `yes` (the
default) sends them; `no` declares the model text-only (multimodal dialogues read the caption
with --mtmcs-caption-for-text, else are skipped); `probe` asks the server once, before the run,
whether it sees images at all (`openai_images.py`). `?adaptive=no` (options join with '&')
keeps the calls in flight at --mtmcs-concurrency instead of adapting them to the server
(`adaptive.py`). A model name never holds '?'.

The rest of a target's configuration is checked here too, before anything is sent: the API key
(`read_key`: from the environment, registered as a secret) and the retry and replica settings
(`check_options`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets.base import TargetOptions
from pytest_mtmcs.textsafety import register_secret

__all__ = ["EXAMPLE", "IMAGE_MODES", "base_url", "check_options", "parse_rest", "read_key",
           "split_options"]

EXAMPLE = ("openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct, or replicas joined by '|': "
           "openai+http://10.0.0.1:8000/v1|http://10.0.0.2:8000/v1:MODEL")
"""A correct spec, quoted by every error."""
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
IMAGE_MODES = ("yes", "no", "probe")
"""The values of a spec's `?images=`: send images, never send them (text-only), or probe."""

# scheme://, then the host (a bracketed IPv6 literal or a name without ':', '/', '[' or ']'),
# an optional :PORT that ends at '/', ':' or the end, and a path up to the first ':'.
_HEAD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>\[[^\]/]*\]|[^:/\[\]|\s]*)"
                   r"(?::(?P<port>\d+)(?=[/:]|$))?(?P<path>/[^:]*)?")


def base_url(text: str, where: str, example: str = "http://127.0.0.1:8000/v1") -> str:
    """`text` checked as a base URL (scheme http or https, a host, a valid port, no query or
    fragment) with trailing '/' removed; SpecError naming `where` and what is wrong."""
    bad = f"{where}: {text!r} is not a base URL"
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError when out of range
    except ValueError as exc:
        raise SpecError(f"{bad} ({exc}); expected http(s)://HOST[:PORT]/PATH, e.g. "
                        f"{example}") from None
    why = None
    if parts.scheme not in ("http", "https"):
        why = "its scheme must be http or https"
    elif not parts.hostname:
        why = "it has no host"
    elif ":" in parts.path:
        why = "its path holds ':' (a model belongs once, after the last URL)"
    elif parts.query or parts.fragment or "@" in parts.netloc:
        why = "it holds a query, a fragment or credentials"
    elif port == 0:
        why = "port 0 cannot be reached"
    if why:
        raise SpecError(f"{bad}: {why}; expected http(s)://HOST[:PORT]/PATH, e.g. {example}")
    return text.rstrip("/")


def _split_model(last: str, spec: str) -> tuple[str, str]:
    """(URL, model) from the last replica's `URL:MODEL`."""
    authority = last.partition("://")[2].partition("/")[0]
    if "@" in authority:
        register_secret(authority.rpartition("@")[0])  # hidden wherever text is redacted
        raise SpecError("a target spec's URL holds credentials (user:password@, not repeated here); "
                        "they would show in every message: put the key in the environment variable "
                        f"named by --mtmcs-api-key-env instead, e.g. {EXAMPLE}")
    m = _HEAD.match(last)
    if m is None or not m.group("host"):
        raise SpecError(f"cannot parse target spec {spec!r}: {last!r} does not start with a URL; "
                        f"expected openai+http(s)://HOST[:PORT]/PATH:MODEL, e.g. {EXAMPLE}")
    url, rest = last[:m.end()], last[m.end():]
    if not rest.startswith(":") or not rest[1:].strip():
        raise SpecError(f"target spec {spec!r} names no model: the model follows the URL after "
                        f"':' (openai+URL:MODEL), e.g. {EXAMPLE}")
    return url, rest[1:].strip()


def split_options(rest: str) -> tuple[str, str, bool]:
    """(the spec's rest without its options, the image mode, whether the calls in flight adapt)
    from `...?images=MODE&adaptive=yes|no`; SpecError quoting an unknown option or value and
    the allowed ones. Without options: `yes`, True."""
    head, sep, query = rest.rpartition("?")
    if not sep or ":" in query or "/" in query:  # no options (a '?' inside a URL is its query)
        return rest, "yes", True
    mode, adaptive = "yes", True
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip().lower()
        if key == "adaptive" and eq:
            if value not in ("yes", "no"):
                raise SpecError(f"target spec 'openai{rest}': adaptive={value!r} is not one of yes, "
                                "no (yes: fewer calls in flight when the server's latency grows "
                                "with them; no: always --mtmcs-concurrency)")
            adaptive = value == "yes"
            continue
        if key != "images" or not eq:
            raise SpecError(f"target spec 'openai{rest}': unknown option {item!r}; the options "
                            f"are images={'|'.join(IMAGE_MODES)} and adaptive=yes|no, e.g. "
                            "openai+http://127.0.0.1:8000/v1:MODEL?images=no&adaptive=no")
        mode = value
        if mode not in IMAGE_MODES:
            raise SpecError(f"target spec 'openai{rest}': images={item.partition('=')[2].strip()!r} "
                            f"is not one of {', '.join(IMAGE_MODES)} (yes: send images; no: the "
                            "model is text-only; probe: ask the server before the run whether it "
                            "sees them)")
    return head, mode, adaptive


def parse_rest(rest: str) -> tuple[str | None, str]:
    """(base_url or None, model) from the part of the spec after `openai`.

    base_url holds several replica URLs joined by '|' for `+URL1|URL2:MODEL` and `+file:..`.
    """
    spec = f"openai{rest}"
    if rest.startswith("+file:"):
        return _replica_file(rest[1:])
    if rest.startswith("+"):
        parts = rest[1:].split("|")
        if any(not p.strip() for p in parts):
            raise SpecError(f"cannot parse target spec {spec!r}: an empty replica; expected "
                            f"replicas joined by '|', e.g. {EXAMPLE}")
        last, model = _split_model(parts[-1].strip(), spec)
        urls = [base_url(u.strip(), f"target spec {spec!r}", EXAMPLE) for u in (*parts[:-1], last)]
        return _unique(urls, f"target spec {spec!r}"), model
    if not rest.strip():
        raise SpecError("cannot parse target spec 'openai:': the model name is missing, "
                        "e.g. openai:gpt-4o")
    return os.environ.get("OPENAI_BASE_URL") or None, rest.strip()


def _replica_file(rest: str) -> tuple[str, str]:
    """(URLs joined by '|', model) from `file:PATH:MODEL`; PATH holds no ':'."""
    path, sep, model = rest[len("file:"):].partition(":")
    if not path or not sep or not model.strip():
        raise SpecError(f"cannot parse target spec 'openai+{rest}': expected "
                        "openai+file:PATH:MODEL, e.g. openai+file:replicas.txt:Qwen/Qwen3-VL-8B-Instruct")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or ("not UTF-8 text" if isinstance(exc, UnicodeDecodeError)
                                                 else exc)
        raise SpecError(f"target spec 'openai+{rest}': cannot read the replica file {path}: "
                        f"{why}") from None
    urls = []
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if line:
            urls.append(base_url(line, f"replica file {path}, line {n}"))
    if not urls:
        raise SpecError(f"replica file {path} lists no URL: expected one http(s)://HOST[:PORT]/PATH "
                        "a line")
    return _unique(urls, f"replica file {path}"), model.strip()


def _unique(urls: list[str], where: str) -> str:
    seen = set()
    for u in urls:
        if u in seen:
            raise SpecError(f"{where}: replica {u} is listed twice; list each replica once")
        seen.add(u)
    return "|".join(urls)


def read_key(options: TargetOptions, base_url: str | None) -> str:
    """The API key from the environment, registered as a secret; SpecError naming the variable
    when it is needed and not set. Self-hosted servers without a key get `EMPTY`."""
    name = options.api_key_env
    raw = os.environ.get(name, "")
    key = raw.strip()  # a key read from a file often ends in a newline
    if key:
        register_secret(raw)
        register_secret(key)
        if not key.isascii() or not key.isprintable():
            raise SpecError(f"the environment variable {name} holds characters an HTTP header "
                            f"cannot carry (control or non-ASCII characters): export {name} "
                            "with the key alone")
        return key
    if base_url is None or name != DEFAULT_KEY_ENV:
        where = "OpenAI's API needs a key" if base_url is None else f"--mtmcs-api-key-env names {name}"
        raise SpecError(f"{where}, but the environment variable {name} is "
                        f"{'empty' if name in os.environ else 'not set'}: export {name}=<your key> "
                        "(or name the variable that holds it with --mtmcs-api-key-env)")
    return "EMPTY"  # self-hosted servers (vLLM, TGI, Ollama) usually accept any key


def check_options(options: TargetOptions) -> None:
    """SpecError naming the first retry/replica setting that cannot work."""
    for name in ("timeout_s", "backoff_base_s", "backoff_cap_s", "retry_after_cap_s",
                 "max_outage_s", "cooldown_base_s", "cooldown_cap_s"):
        value = getattr(options, name)
        if not value >= 0 or (name == "timeout_s" and not 0 < value < float("inf")):
            raise SpecError(f"TargetOptions.{name} must be a number of seconds "
                            f"{'> 0' if name == 'timeout_s' else '>= 0'}, got {value!r}")
    if options.retries < 0 or options.replica_concurrency < 0:
        raise SpecError("TargetOptions.retries and replica_concurrency must be >= 0, got "
                        f"{options.retries!r} and {options.replica_concurrency!r}")
    if options.max_reply_chars < 1:
        raise SpecError(f"TargetOptions.max_reply_chars must be >= 1, got {options.max_reply_chars!r}")
