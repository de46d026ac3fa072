"""The node's configuration (``node.yaml``): typed, strict, paths resolved beside the file.

```yaml
ae_title: MEDSIGHT
port: 11112
allowed_callers: [SCANNER]
db: sqlite:///node.db
quiet_seconds: 5
routes:
  - match: {Modality: CT}
    run: runs/chest
destination: {ae_title: PACS, host: 127.0.0.1, port: 4242}
# or by STOW-RS: destination: {stow_url: http://pacs:8042/dicom-web, user: medsight, password_file: pacs.pw}
```

Optional: ``host`` (address to listen on), ``storage_dir`` (default ``received`` beside the
file), ``keep_received``, ``workers``, ``lease_seconds``, ``tls`` (``cert``, ``key``, ``ca``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydicom.datadict import dictionary_VR, tag_for_keyword

from medsight.config import read_yaml_mapping
from medsight.errors import ConfigError

AE_TITLE = r"^[ -~]{1,16}$"  # DICOM AE: up to 16 printable ASCII characters


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tls(_Strict):
    cert: Path  # this node's certificate (PEM)
    key: Path  # its private key (PEM)
    ca: Path | None = None  # certificates of the peers to trust; given: peers must present one


class Route(_Strict):
    match: dict[str, str] = Field(min_length=1)  # DICOM keyword -> value (case-insensitive)
    run: Path  # run folder made by `medsight train`
    priority: int = 0

    @field_validator("match", mode="before")
    @classmethod
    def _keywords(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for keyword in value:
                if tag_for_keyword(str(keyword)) is None:
                    raise ValueError(f"{keyword!r} is not a DICOM keyword (e.g. Modality, BodyPartExamined)")
                if dictionary_VR(tag_for_keyword(str(keyword))) == "SQ":
                    raise ValueError(f"{keyword!r} is a sequence; match plain attributes")
            return {str(k): str(v) for k, v in value.items()}
        return value

    def matches(self, ds: Any) -> bool:
        """Every ``match`` keyword equals the dataset's value (compared as text, ignoring case)."""
        for keyword, wanted in self.match.items():
            value = ds.get(keyword)
            if value is None:
                return False
            text = "\\".join(str(v) for v in value) if type(value).__name__ == "MultiValue" else str(value)
            if text.strip().casefold() != wanted.strip().casefold():
                return False
        return True


class Destination(_Strict):
    """Where results go: a DICOM AE by C-STORE (``ae_title``, ``host``, ``port``) or a DICOMweb
    server by STOW-RS (``stow_url``, its root, e.g. ``http://pacs:8042/dicom-web``; optional
    ``user`` and ``password_file`` for HTTP basic authentication)."""

    ae_title: str | None = Field(None, pattern=AE_TITLE)
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    stow_url: str | None = None
    user: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_way(self) -> "Destination":
        dimse = [k for k in ("ae_title", "host", "port") if getattr(self, k) is not None]
        if self.stow_url is not None:
            if dimse:
                raise ValueError("give either stow_url (STOW-RS) or ae_title, host and port (C-STORE), not both")
            if not self.stow_url.startswith(("http://", "https://")):
                raise ValueError(f"stow_url must start with http:// or https://, not {self.stow_url!r}")
            if self.password_file is not None and not self.user:
                raise ValueError("password_file goes with user")
            return self
        missing = [k for k in ("ae_title", "host", "port") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"give ae_title, host and port (C-STORE) or stow_url (STOW-RS); missing "
                             f"{', '.join(missing)}")
        if self.user or self.password_file:
            raise ValueError("user and password_file go with stow_url (STOW-RS)")
        return self

    @property
    def is_stow(self) -> bool:
        return self.stow_url is not None

    def __str__(self) -> str:
        return self.stow_url if self.is_stow else f"{self.ae_title}@{self.host}:{self.port}"


class NodeConfig(_Strict):
    ae_title: str = Field("MEDSIGHT", pattern=AE_TITLE)
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=0, le=65535)
    allowed_callers: list[str] = Field(min_length=1)
    db: str
    quiet_seconds: float = Field(5.0, gt=0)
    routes: list[Route] = Field(min_length=1)
    destination: Destination
    storage_dir: Path = Path("received")
    keep_received: bool = False
    workers: int = Field(1, ge=0, le=64)
    lease_seconds: float = Field(300.0, gt=0)  # a worker's hold on a job; a killed worker's job returns after it
    tls: Tls | None = None

    def route_for(self, ds: Any) -> list[Route]:
        return [route for route in self.routes if route.matches(ds)]


def _beside(value: Any, base: Path) -> Any:
    if isinstance(value, (str, Path)) and not Path(value).expanduser().is_absolute():
        return str((base / Path(value).expanduser()).resolve())
    return value


def _resolve(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths (storage_dir, runs, TLS files, a SQLite file) are taken beside the config file."""
    raw["storage_dir"] = _beside(raw.get("storage_dir", "received"), base)
    for route in raw.get("routes") or []:
        if isinstance(route, dict) and "run" in route:
            route["run"] = _beside(route["run"], base)
    destination = raw.get("destination")
    if isinstance(destination, dict) and destination.get("password_file") is not None:
        destination["password_file"] = _beside(destination["password_file"], base)
    if isinstance(raw.get("tls"), dict):
        raw["tls"] = {k: _beside(v, base) if v is not None else v for k, v in raw["tls"].items()}
    db = raw.get("db")
    if isinstance(db, str) and db.startswith("sqlite:///") and not db.startswith("sqlite:////"):
        raw["db"] = "sqlite:///" + str(_beside(db[len("sqlite:///"):], base))
    return raw


def node_config_from_dict(raw: dict[str, Any], source: str = "node config") -> NodeConfig:
    try:
        cfg = NodeConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key (known: {', '.join(_known(err['loc']))})"
        raise ConfigError(f"{source}: {where}: {message}") from None
    for i, route in enumerate(cfg.routes):
        if not (route.run / "config.yaml").is_file():
            raise ConfigError(f"{source}: routes.{i}.run: {route.run} is not a run folder (no config.yaml)")
    return cfg


def _known(loc: tuple) -> list[str]:
    """The keys allowed where an unknown one was found."""
    model: Any = NodeConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        inner = getattr(annotation, "__args__", (annotation,))
        model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def load_node_config(path: str | Path) -> NodeConfig:
    """Read ``node.yaml``; every problem is one :class:`ConfigError` line naming the key."""
    path = Path(path)
    raw = read_yaml_mapping(path, "node config")
    return node_config_from_dict(_resolve(raw, path.resolve().parent), source=str(path))
