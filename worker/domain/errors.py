"""The one exception the operations raise: a refusal with a stable code, answered to the sender."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.fields import LIMITS
from schemas.results import ErrorCode, ErrorDetail, ErrorInfo


class CommandRefused(Exception):
    """The command was understood and cannot be carried out; nothing of it is stored."""

    def __init__(
        self, code: ErrorCode, message: str, details: Sequence[ErrorDetail] = (), total: int = 0
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details[: LIMITS.problems_reported])
        self.details_omitted = max(total, len(details)) - len(self.details)

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code,
            message=self.message,
            details=self.details,
            details_omitted=self.details_omitted,
        )


def count_phrase(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
