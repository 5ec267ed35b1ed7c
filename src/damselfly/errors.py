"""Errors that reach users. Each message says what failed, for what, and what to try."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class DamselflyError(Exception):
    """Base of every error damselfly reports to a user (CLI line, API 4xx)."""

    code = "InternalError"
    exit_code = 1

    def details(self) -> list[str]:
        """Extra lines under the CLI's `error:` line."""
        return []


class RemoteError(DamselflyError):
    """An error another damselfly process reported (the peer daemon, the scheduler)."""

    def __init__(
        self, code: str, message: str, exit_code: int = 1, details: list[str] | None = None
    ):
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code
        self._details = list(details or [])

    def details(self) -> list[str]:
        return self._details


class Interrupted(DamselflyError):
    code = "Interrupted"
    exit_code = 130


class InvalidInput(DamselflyError):
    code = "InvalidInput"


class NotFound(DamselflyError):
    code = "ResourceNotFound"


class Conflict(DamselflyError):
    code = "Conflict"


class OutboundDenied(DamselflyError):
    """This host's outbound policy forbids the address a URL led to."""

    code = "OutboundDenied"


class StorageFull(DamselflyError):
    code = "StorageFull"


class DigestMismatch(DamselflyError):
    code = "DigestMismatch"


class DownloadTimeout(DamselflyError):
    code = "DownloadTimeout"


@dataclass
class SourceError(DamselflyError):
    """The origin refused or failed a request; carries what it answered."""

    message: str
    url: str
    status: int | None = None
    reason: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    retryable: bool = False
    unreachable: bool = False  # no connection at all: no point trying another method

    code = "SourceFileError.DownloadNotAccessible"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def details(self) -> list[str]:
        """Extra lines for the CLI's failure block: status and response headers."""
        lines: list[str] = []
        if self.status is not None:
            lines.append(f"status: {self.status} {self.reason}".rstrip())
        for name, value in self.headers.items():
            lines.append(f"header: {name}: {value}")
        return lines


class RegistryUnreachable(DamselflyError):
    code = "RegistryUnreachable"


class RegistryUnauthorized(DamselflyError):
    code = "RegistryUnauthorized"


class ManifestUnknown(DamselflyError):
    code = "ManifestUnknown"


class PlatformNotFound(DamselflyError):
    code = "PlatformNotFound"


class UnsupportedMediaType(DamselflyError):
    code = "UnsupportedMediaType"


class TemplateNotFound(NotFound):
    code = "ResourceNotFound.TemplateNotExist"


class MediaTaskNotFound(NotFound):
    code = "ResourceNotFound.TaskNotFound"


class InvalidTaskId(InvalidInput):
    code = "InvalidParameterValue.TaskId"


class DuplicateSession(Conflict):
    code = "InvalidParameterValue.SessionIdDuplicated"
