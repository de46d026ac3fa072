"""Start the service: check the binding, load every model once, run uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from medsight.service.settings import ServiceSettings, check_binding
from medsight.utils.extras import require

log = logging.getLogger(__name__)


def serve(runs: Sequence[str | Path], host: str, port: int, settings: ServiceSettings,
          indexes: Sequence[str | Path] = ()) -> None:
    """Load ``runs`` (with their similar-case ``indexes``) and answer on ``host:port`` until interrupted."""
    require("fastapi", "uvicorn", "python_multipart", extra="service", feature="medsight serve")
    import uvicorn

    from medsight.service.app import create_app
    from medsight.service.models import load_registry
    from medsight.store import open_database

    check_binding(host, settings.open_access)  # before the slow part: loading the models
    audit_db = open_database(settings.audit_db) if settings.audit_db else None
    app = create_app(load_registry(runs, indexes), settings, audit_db)
    log.info("medsight service on http://%s:%d (viewer /viewer/, API docs /docs)%s", host, port,
             "; OPEN, no API key" if settings.open_access else "")
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10,
                server_header=False)
