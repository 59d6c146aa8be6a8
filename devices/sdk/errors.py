"""Exceptions of the device SDK.

    SdkError
    ├── ApiError                   - the HTTP API answered with an error ({"error": {...}})
    ├── UntrustedGatewayCertificate - GET /v1/ca/gateway does not chain to GET /v1/ca as a signer
    ├── IdentityMissing            - the state dir holds no provisioned identity
    ├── ConnectFailed              - the broker did not accept us (refused, TLS, or timed out)
    └── ResultTimeout              - no (final) result for an order within the timeout

A refused order is not an exception: it is a `Result` with a `declined` or `rejected` status.
"""

from __future__ import annotations


class SdkError(Exception):
    """Base of every exception the device SDK raises on purpose."""


class ApiError(SdkError):
    """The HTTP API refused a call; `status` and `code` are the contract's."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class UntrustedGatewayCertificate(SdkError):
    """The result-signing certificate does not validate as the gateway's signer."""


class IdentityMissing(SdkError):
    """The state dir holds no key, certificate or device id: provision the device first."""


class ConnectFailed(SdkError):
    """The broker refused the connection or the subscription, or did not answer in time."""


class ResultTimeout(SdkError):
    """No result (or no final result) for the order arrived within the timeout."""
