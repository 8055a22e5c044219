"""The one error type of the HTTP API: a status code and a one-line message, sent as {"error": ...}."""

from __future__ import annotations

from ..imageio import ImageLoadError, ImageTooLargeError, NotAnImageError


class ApiError(Exception):
    """A client error with an HTTP status (400, 404, 413, 415) and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def image_error(exc: ImageLoadError) -> ApiError:
    """Map imageio's one-line reasons to HTTP: 413 over the pixel cap, 415 not an image, 400 otherwise."""
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, str(exc))
    if isinstance(exc, NotAnImageError):
        return ApiError(415, str(exc))
    return ApiError(400, str(exc))
