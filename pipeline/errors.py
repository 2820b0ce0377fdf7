"""The one error shape: every failure a user can cause or see is a StudioError with a message.

The API turns these into `{status: "error", error, field?}`; the UI and CLI show the message.
"""

from __future__ import annotations


class StudioError(Exception):
    """A failure with a message meant for the user (never a stack trace)."""

    status_code = 400

    def __init__(self, message: str, field: list[str | int] | None = None, *, stage: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.stage = stage

    def to_dict(self) -> dict:
        body: dict = {"status": "error", "error": self.message}
        if self.field:
            body["field"] = self.field
        return body


class BadInput(StudioError):
    """The caller asked for something invalid (400)."""


class NotFound(StudioError):
    """A named thing does not exist, or is not the caller's (404)."""

    status_code = 404


class FetchError(BadInput):
    """A user-given URL could not be fetched safely or is not what it should be."""


class ProviderError(StudioError):
    """An outside service failed. `transient` failures may be retried."""

    status_code = 502

    def __init__(self, message: str, *, transient: bool = False, stage: str | None = None):
        super().__init__(message, stage=stage)
        self.transient = transient


class RenderError(StudioError):
    """ffmpeg failed to produce the video."""

    status_code = 500


class Cancelled(StudioError):
    """The run was cancelled by its owner."""
