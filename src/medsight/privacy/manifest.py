"""Which files ``medsight deid`` has already finished, so a rerun does only the rest.

``OUT/deid_manifest.jsonl`` holds one line per de-identified file::

    {"file": "site0/a.dcm", "options": "<keyed fingerprint>", "source": "<keyed hash>",
     "output_sha256": "...", "review": null}

A line is appended (and flushed) the moment a file's output is in place, so a run that was
killed, or stopped by a full disk, still leaves an exact record of what it finished. On the
next run a file is skipped only when all three still hold:

- the same options: a keyed hash (HMAC) of the key, profile, date policy, private allow-list
  and medsight version, so another key or option redoes everything (and the manifest reveals
  nothing about the key);
- the same source content (its keyed hash now equals the recorded one);
- its output still there with the recorded content (SHA-256).

The manifest holds paths relative to IN and hashes, never patient data; the sources' hashes are
keyed, so whoever receives OUT cannot test whether a given identifiable file was among them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import medsight
from medsight.errors import OutputFileError
from medsight.utils.atomic import write_text

MANIFEST_NAME = "deid_manifest.jsonl"


def options_fingerprint(key: bytes, **options: Any) -> str:
    """A keyed hash of everything that decides a de-identified file's content."""
    text = json.dumps({**options, "medsight": medsight.__version__}, sort_keys=True, default=str)
    return hmac.new(key, b"medsight-deid-options\0" + text.encode(), hashlib.sha256).hexdigest()[:32]


def file_digest(path: Path, key: bytes | None = None) -> str:
    """SHA-256 of a file's content, keyed (HMAC) when ``key`` is given."""
    digest = hmac.new(key, digestmod=hashlib.sha256) if key is not None else hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Manifest:
    """The finished files of earlier runs into one OUT, and the record of this run's."""

    def __init__(self, path: Path, key: bytes, fingerprint: str):
        self.path, self.key, self.fingerprint = Path(path), key, fingerprint
        self.entries: dict[str, dict[str, Any]] = {}
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # the torn last line of a killed run
            if isinstance(entry, dict) and entry.get("options") == fingerprint and "file" in entry:
                self.entries[entry["file"]] = entry
        if len(self.entries) != len(lines):
            # Drop torn lines and other options' entries, so appends start on a clean line.
            write_text(self.path, "".join(json.dumps(e) + "\n" for e in self.entries.values()))

    def done(self, rel: str, source: Path, target: Path) -> dict[str, Any] | None:
        """The entry of ``rel`` if an earlier run finished it and nothing changed since."""
        entry = self.entries.get(rel)
        if entry is None or not target.is_file():
            return None
        try:
            if file_digest(source, self.key) != entry["source"] or file_digest(target) != entry["output_sha256"]:
                return None
        except (OSError, KeyError):
            return None
        return entry

    def record(self, rel: str, source: Path, target: Path, review: dict[str, Any] | None) -> None:
        """Append that ``rel`` is finished (call once its output is in place)."""
        entry = {"file": rel, "options": self.fingerprint, "source": file_digest(source, self.key),
                 "output_sha256": file_digest(target), "review": review}
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        except OSError as exc:
            raise OutputFileError(self.path, f"cannot write: {exc.strerror or exc}") from exc
        self.entries[rel] = entry
