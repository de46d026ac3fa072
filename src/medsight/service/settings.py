"""How a service instance is configured, and the start-up checks that keep it safe.

An API key is required unless the operator starts the service ``--open``, which is refused
on any address other than loopback: an open diagnosis service on a hospital network would let
anyone run models on (and send) patient images.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from medsight.errors import ConfigError, InputFileError

MIB = 1024 * 1024
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class PacsSettings:
    """The one PACS the service talks to; chosen by the operator, never by a client."""

    url: str
    user: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class ServiceSettings:
    api_key: str | None = None
    open_access: bool = False
    max_upload_bytes: int = 64 * MIB
    workers: int = 2
    queue_size: int = 32
    require_deidentified: bool = False
    pacs: PacsSettings | None = None
    audit_db: str | None = None  # database URL: a row per prediction (store/audit.py), the node's jobs (worklist)
    show_patient: bool = False  # the worklist returns patient name and ID (never logged either way)

    def __post_init__(self) -> None:
        if not self.open_access and not self.api_key:
            raise ConfigError("the service needs an API key (--api-key or --api-key-file), "
                              "or --open for a loopback-only service without one")
        if self.workers < 1 or self.queue_size < 0 or self.max_upload_bytes < 1:
            raise ConfigError("workers must be >= 1, queue size >= 0 and the upload limit > 0")


def caller_id(settings: ServiceSettings) -> str:
    """Who asks, as the audit trail records it: the API key's id (a digest prefix), never the key."""
    if settings.open_access or not settings.api_key:
        return "open"
    return "key-" + hashlib.sha256(settings.api_key.encode()).hexdigest()[:12]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; anything else may be reachable from outside."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, open_access: bool) -> None:
    """Refuse ``--open`` on a non-loopback address."""
    if open_access and not is_loopback(host):
        raise ConfigError(f"--open (no API key) is only allowed on a loopback address, not {host!r}; "
                          "give an API key to serve on the network")


def resolve_api_key(key: str | None, key_file: Path | None) -> str | None:
    """The API key from the command line or, better for production (not in ``ps``), a file."""
    if key and key_file:
        raise ConfigError("give either --api-key or --api-key-file, not both")
    if key_file is not None:
        key_file = Path(key_file)
        try:
            key = key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputFileError(key_file, f"cannot read API key file: {exc.strerror or exc}") from None
        if not key:
            raise InputFileError(key_file, "API key file is empty")
    if key is not None and len(key) < 8:
        raise ConfigError("the API key must be at least 8 characters")
    return key


def read_secret(value: str | None, file: Path | None, what: str) -> str | None:
    """A password from an option or (preferred) a file, stripped of its trailing newline."""
    if value and file:
        raise ConfigError(f"give either the {what} or a file holding it, not both")
    if file is None:
        return value
    try:
        return Path(file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputFileError(file, f"cannot read {what}: {exc.strerror or exc}") from None
