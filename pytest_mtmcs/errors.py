"""The project's error kinds.

Every error a user can cause or meet carries enough to act on: where (file, row id, field),
what was expected, and how to fix it. The plugin maps them to exit codes: `DataError` and
`SpecError` are usage errors (pytest exit code 4), `TargetError` is infrastructure trouble
(exit code 75, "temporary failure", so a pipeline can retry an outage), except `ServerRefused`
(a server that rejects the run's configuration: its key, its model), which is a usage error
too. `error_kind` is the one mapping from an error to the kind that decides the exit code.
"""

from __future__ import annotations

EXIT_INFRA = 75
"""Exit code for a run whose results are incomplete because a model server failed."""


class MtmcsError(Exception):
    """Base class of every error raised on purpose by pytest-mtmcs."""


class DataError(MtmcsError):
    """Benchmark data that does not match the expected schema.

    The message names the file, the row id and the field, and says what was expected.
    """

    def __init__(self, message: str, *, file: str | None = None, row: object = None,
                 field: str | None = None) -> None:
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row id {row}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file = file
        self.row = row
        self.field = field


class SpecError(MtmcsError):
    """A target, guardrail or option value that cannot be parsed."""


class TargetError(MtmcsError):
    """A model call that failed for good (after retries): server down, bad status, bad body."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ServerRefused(TargetError):
    """A model server rejected the run's configuration, not one call: HTTP 401 or 403 (the API
    key), or 404 for the model or the URL. Retrying cannot help and neither can a later run
    with the same options, so its kind is `config` (exit code 4, like `SpecError`), not
    `target`. The message names the server and quotes its (redacted, neutralised) answer and
    the option to fix; `status` is the HTTP status.
    """


class OutageError(TargetError):
    """A model server has failed every call for longer than `--mtmcs-max-outage` seconds.

    Raised by a target whose outage circuit is open: no call to it (to any of its replicas)
    has succeeded since the first failure of the current streak, and that was more than
    `TargetOptions.max_outage_s` ago. Further calls fail at once with this error instead of
    each waiting out its own retries. Contract with the caller: stop the run (exit code
    `EXIT_INFRA`, 75), since the results could only be more errors; re-running later resumes
    from the store. `down_s` is how long the server had been failing, `max_outage_s` the limit.
    """

    def __init__(self, message: str, *, url: str | None = None, down_s: float = 0.0,
                 max_outage_s: float = 0.0) -> None:
        super().__init__(message, url=url)
        self.down_s = down_s
        self.max_outage_s = max_outage_s


class GuardrailUnavailable(MtmcsError):
    """An optional dependency is missing; the message carries the exact install line."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(
            f"{what} needs the optional dependency {module!r}, which is not installed. "
            f'Install it with: pip install "pytest-mtmcs[{extra}]"'
        )
        self.extra = extra
        self.module = module


ERROR_KINDS = ("config", "target", "data", "other")
"""What `error_kind` returns, in the order the exit code considers them."""


def error_kind(exc: BaseException) -> str:
    """The kind of an error, which decides the run's exit code: `config` (a server refused the
    run's key or model, or a bad spec: exit 4), `target` (a model server failed: exit 75),
    `data` (bad benchmark data: exit 4), `other` (anything else)."""
    if isinstance(exc, (ServerRefused, SpecError)):
        return "config"
    if isinstance(exc, TargetError):
        return "target"
    if isinstance(exc, DataError):
        return "data"
    return "other"
