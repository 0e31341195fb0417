"""The project's error kinds.

Every error a user can cause or meet carries enough to act on: where (file, row id, field),
what was expected, and how to fix it. The plugin maps them to exit codes: `DataError` and
`SpecError` are usage errors (pytest exit code 4), `TargetError` is infrastructure trouble
(exit code 75, "temporary failure", so a pipeline can retry an outage).
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


class GuardrailUnavailable(MtmcsError):
    """An optional dependency is missing; the message carries the exact install line."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(
            f"{what} needs the optional dependency {module!r}, which is not installed. "
            f'Install it with: pip install "pytest-mtmcs[{extra}]"'
        )
        self.extra = extra
        self.module = module
