"""Keyed, reproducible replacements: UIDs, patient pseudonyms and per-patient date offsets.

Everything is derived with HMAC-SHA256 under the site's secret key, so the same key gives the
same output (links between instances, series and studies survive, and so do links across
runs), while without the key nobody can recompute a pseudonym from a guessed patient ID.
Each kind of value hashes under its own label, so a UID never collides with a pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from functools import lru_cache
from itertools import count
from pathlib import Path

from medsight.errors import MedsightError

logger = logging.getLogger(__name__)

# The 2.25 arc holds UIDs made from a 128-bit integer (PS3.5 B.2); 2.25. + 39 digits <= 44 chars.
UID_ROOT = "2.25."
PSEUDONYM_PREFIX = "ANON-"
# Dates move back by 1..MAX_SHIFT_DAYS days, one offset per patient: intervals within a patient
# survive, while the absolute dates (and the season, across years) do not.
MAX_SHIFT_DAYS = 3650
MIN_KEY_BYTES = 16


def load_key(path: Path | None) -> bytes:
    """Read the secret key from ``path``; ``None`` gives a random, one-off key (with a warning).

    Whitespace at either end of the file is ignored, so ``echo secret > site.key`` works.
    """
    if path is None:
        logger.warning(
            "no --key-file given: using a random key, so pseudonyms and UIDs will differ on "
            "every run and cannot be reproduced or linked to later data"
        )
        return os.urandom(32)
    path = Path(path)
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise MedsightError(f"key file {path}: not found") from None
    except OSError as exc:
        raise MedsightError(f"key file {path}: cannot be read ({exc.strerror or exc})") from None
    if not key:
        raise MedsightError(f"key file {path}: is empty")
    if len(key) < MIN_KEY_BYTES:
        logger.warning("key file %s holds fewer than %d bytes: a short key is easy to guess",
                       path, MIN_KEY_BYTES)
    return key


class Keyring:
    """The keyed replacements of one run (cached: a study repeats the same UIDs many times)."""

    def __init__(self, key: bytes):
        if not key:
            raise MedsightError("the de-identification key is empty")
        self._key = bytes(key)
        self.uid = lru_cache(maxsize=65536)(self._uid)  # type: ignore[method-assign]

    def _digest(self, label: str, value: str) -> bytes:
        message = label.encode("ascii") + b"\x00" + value.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _uid(self, uid: str, avoid: tuple[str, ...] = ()) -> str:
        """The new UID standing for ``uid``: same input, key and ``avoid``, same output.

        ``avoid``: numeric identifiers of the patient (ID, birth date) that the new UID's digits
        must not spell by chance, as a short numeric ID would in a few percent of UIDs.
        """
        uid = uid.strip()
        for attempt in count():
            label = "uid" if attempt == 0 else f"uid/{attempt}"
            digits = str(int.from_bytes(self._digest(label, uid)[:16], "big"))
            if not any(value in digits for value in avoid):
                return UID_ROOT + digits
        raise AssertionError("unreachable")  # pragma: no cover

    def pseudonym(self, patient: str) -> str:
        """The pseudonym standing for a patient (PatientID, or PatientName when ID is empty)."""
        return PSEUDONYM_PREFIX + self._digest("patient", patient).hex()[:12].upper()

    def day_offset(self, patient: str) -> int:
        """The patient's date shift in days, in ``[-MAX_SHIFT_DAYS, -1]``."""
        value = int.from_bytes(self._digest("date-shift", patient)[:8], "big")
        return -(1 + value % MAX_SHIFT_DAYS)
