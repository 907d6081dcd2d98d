"""Domain errors: each carries an HTTP status and a short code. No aiohttp here.

Raised anywhere (storage, auth, handlers); turned into a response in exactly
one place, ``s3gate.http.middlewares.error_middleware``.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or wrong; the gateway refuses to start."""


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    default_message = "internal error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = dict(headers or {})
        super().__init__(self.message)


class BadRequest(GatewayError):
    status, code, default_message = 400, "bad_request", "bad request"


class InvalidBucketName(BadRequest):
    code = "invalid_bucket_name"


class InvalidKey(BadRequest):
    code = "invalid_key"


class ChecksumMismatch(BadRequest):
    code = "checksum_mismatch"
    default_message = "checksum mismatch: the body received does not match the checksum sent; nothing was stored"


class Unauthorized(GatewayError):
    status, code, default_message = 401, "unauthorized", "authentication required"


class Forbidden(GatewayError):
    status, code, default_message = 403, "forbidden", "forbidden"


class NotFound(GatewayError):
    status, code, default_message = 404, "not_found", "not found"


class NoSuchBucket(NotFound):
    code, default_message = "no_such_bucket", "bucket does not exist"


class NoSuchKey(NotFound):
    code, default_message = "no_such_key", "no such key"


class MethodNotAllowed(GatewayError):
    status, code, default_message = 405, "method_not_allowed", "method not allowed"


class Conflict(GatewayError):
    status, code, default_message = 409, "conflict", "conflict with the current state"


class PreconditionFailed(GatewayError):
    status, code, default_message = 412, "precondition_failed", "precondition failed"


class PayloadTooLarge(GatewayError):
    status, code, default_message = 413, "too_large", "upload exceeds the size limit"


class RangeNotSatisfiable(GatewayError):
    status, code, default_message = 416, "range_not_satisfiable", "requested range not satisfiable"

    def __init__(self, size: int, message: str | None = None):
        # RFC 9110 §15.5.17: a 416 carries Content-Range with the current length.
        super().__init__(message, headers={"Content-Range": f"bytes */{size}"})


class TooManyRequests(GatewayError):
    status, code, default_message = 429, "too_many_requests", "too many attempts; try again later"


class ClientGone(GatewayError):
    """The client disconnected; nothing to answer, but the upload must be undone."""

    status, code, default_message = 400, "client_gone", "client disconnected"


class UnsupportedTransferCoding(GatewayError):
    """RFC 9112 §6.1: a request in a transfer coding the server does not decode is 501."""

    status, code, default_message = 501, "not_implemented", "transfer coding not supported"


class StorageError(GatewayError):
    status, code, default_message = 502, "storage_error", "storage failed"


class StorageUnavailable(GatewayError):
    status, code, default_message = 503, "storage_unavailable", "storage unreachable"


class ShuttingDown(GatewayError):
    status, code, default_message = 503, "shutting_down", "gateway is shutting down; upload aborted, retry"
