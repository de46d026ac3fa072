"""One database for the job queue, readers' feedback and the audit trail of every inference.

``open_database(url)`` (``db.py``) connects to ``sqlite:///PATH`` or ``postgresql://...`` and
migrates the schema; ``jobs.py`` is the durable queue, ``audit.py`` the hash-chained trail.
"""

from medsight.store.db import Database, DatabaseError, default_url, open_database

__all__ = ["Database", "DatabaseError", "default_url", "open_database"]
