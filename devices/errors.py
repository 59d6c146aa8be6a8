"""Exceptions of the `devices` package.

    DevicesError
    ├── CsrInvalid           - a CSR that does not parse, fails its signature or holds a refused key
    ├── AttestationInvalid   - an attestation chain that does not prove the CSR's key
    ├── AttestationCaInvalid - an uploaded manufacturer CA that is not a usable CA certificate
    ├── KeyInUse             - a CSR whose key is, or once was, another device's identity
    └── KeystoreDamaged      - the CA directory exists but cannot be loaded as it was written

Refusals (`CsrInvalid`, `AttestationInvalid`, `AttestationCaInvalid`, `KeyInUse`) are expected
outcomes of bad or conflicting input; the gateway maps them to the contract's error codes in one
table. `KeystoreDamaged`
is an operator's problem: the gateway must not start on it, and must never overwrite the keys.
"""

from __future__ import annotations


class DevicesError(Exception):
    """Base of every exception the `devices` package raises on purpose."""


class CsrInvalid(DevicesError):
    """The CSR does not parse, its self-signature fails, or its key is not P-256 or Ed25519."""


class AttestationInvalid(DevicesError):
    """The attestation chain does not validate, or its leaf holds another key than the CSR."""


class AttestationCaInvalid(DevicesError):
    """An uploaded manufacturer CA is not exactly one parseable CA certificate."""


class KeyInUse(DevicesError):
    """The CSR's public key is bound to another device: a key is one device's identity, for good
    (also after that device's revocation or rotation to another key)."""


class KeystoreDamaged(DevicesError):
    """The CA directory exists but a file in it is missing or unreadable."""
