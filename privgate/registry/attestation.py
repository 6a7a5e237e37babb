"""Signed approval of a model version, checkable with only the public key.

MLflow tags and aliases are not proof: anyone with EDIT permission on a registered
model can move an alias and write an "approved" tag. When every gate passed, privgate
signs an attestation with an Ed25519 key that lives outside MLflow: the version, its
run, the SHA-256 of every model artifact file, the SHA-256 of the gate report, the
epsilon and delta spent and the policy hash. A consumer verifies the signature and
every digest before anything is deserialized.

Keys: `PRIVGATE_SIGNING_KEY_FILE` (PEM, PKCS#8), else `$PRIVGATE_HOME/keys/signing.key`
created with 0600 permissions on first use; the public key sits beside it as
`signing.pub`. Consumers read `PRIVGATE_VERIFY_KEY_FILE`, else that `signing.pub`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from privgate.errors import ConfigError
from privgate.home import create_private_file, is_private, privgate_home

FORMAT = "privgate.attestation/v1"


@dataclass(frozen=True)
class Attestation:
    """What the signature vouches for."""

    model_name: str
    version: str
    run_id: str
    artifacts: dict[str, str]  # path relative to the model root -> SHA-256
    gate_report_sha256: str
    epsilon: float
    delta: float
    policy_sha256: str
    key_id: str
    format: str = FORMAT
    # A federated model's silos: each one's table hash, epsilon, k and gate verdicts
    # (`privgate.federated.evidence.attestation_silos`); absent for central training.
    silos: list[dict[str, Any]] | None = None
    # A person's sign-off, when the policy asked for one (`privgate.registry.approval`):
    # approver, decision, rationale, time, and the gate report's SHA-256 they approved.
    approval: dict[str, Any] | None = None

    def payload(self) -> bytes:
        """Return the canonical bytes that are signed (no `silos`/`approval` key when unset)."""
        data = asdict(self)
        for optional in ("silos", "approval"):
            if data[optional] is None:
                del data[optional]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> Attestation:
        """Parse signed bytes back (raises ValueError when they are not an attestation)."""
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a privgate attestation")
        return cls(**data)


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def digest_tree(root: Path) -> dict[str, str]:
    """Return the SHA-256 of every file under `root`, by POSIX path relative to it."""
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        with path.open("rb") as handle:
            digests[path.relative_to(root).as_posix()] = hashlib.file_digest(
                handle, "sha256"
            ).hexdigest()
    return digests


def key_id(public_key: Ed25519PublicKey) -> str:
    """Return a short fingerprint of a public key (first 16 hex of its SHA-256)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_bytes(raw)[:16]


def _default_key_path() -> Path:
    return privgate_home() / "keys" / "signing.key"


def load_signing_key() -> Ed25519PrivateKey:
    """Return the signing key, creating a 0600 key file (and its .pub) on first use.

    Raises:
        ConfigError: when the key file is not an Ed25519 PEM key or others can read it.
    """
    configured = os.environ.get("PRIVGATE_SIGNING_KEY_FILE")
    path = Path(configured) if configured else _default_key_path()
    if not path.exists():
        if configured:
            raise ConfigError(f"signing key file {path} ($PRIVGATE_SIGNING_KEY_FILE) not found")
        _create_key_pair(path)
    if not is_private(path):
        raise ConfigError(f"signing key file {path} is readable by others; run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"signing key file {path} is not an unencrypted PEM key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key file {path} is not an Ed25519 key")
    return key


def _create_key_pair(path: Path) -> None:
    # Concurrent first runs agree on one key: the public half is derived from the winner.
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    create_private_file(path, pem)
    winner = serialization.load_pem_private_key(path.read_bytes(), password=None)
    public = winner.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.with_suffix(".pub").write_bytes(public)


def load_verify_key() -> Ed25519PublicKey:
    """Return the public key consumers verify with.

    Raises:
        ConfigError: when no public key is configured or found.
    """
    configured = os.environ.get("PRIVGATE_VERIFY_KEY_FILE")
    path = Path(configured) if configured else _default_key_path().with_suffix(".pub")
    if not path.exists():
        raise ConfigError(
            f"no public key to verify approvals: {path} not found (set "
            "PRIVGATE_VERIFY_KEY_FILE to the publisher's signing.pub)"
        )
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError:
        raise ConfigError(f"public key file {path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"public key file {path} is not an Ed25519 key")
    return key


def sign(attestation: Attestation, key: Ed25519PrivateKey) -> str:
    """Return the base64 Ed25519 signature of the attestation's payload."""
    return base64.b64encode(key.sign(attestation.payload())).decode()


def signature_valid(payload: bytes, signature: str, key: Ed25519PublicKey) -> bool:
    """Return True when `signature` (base64) signs exactly `payload` under `key`."""
    try:
        key.verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def describe(attestation: Attestation) -> dict[str, Any]:
    """Return the attestation as a JSON-ready dict."""
    return asdict(attestation)
