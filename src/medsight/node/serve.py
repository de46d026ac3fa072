"""``medsight listen`` and ``medsight work``: the node's threads, started and stopped together."""

from __future__ import annotations

import logging
import threading
from contextlib import suppress

from medsight.errors import MedsightError
from medsight.node.config import NodeConfig
from medsight.node.dimse import check_destination
from medsight.node.receive import Receiver, start_scp
from medsight.node.worker import Models, Worker, worker_name
from medsight.store import open_database
from medsight.store.jobs import JobQueue

log = logging.getLogger(__name__)


class Node:
    """The SCP (``listen=True``), the quiet-series sweeper and ``cfg.workers`` worker threads.

    ``start()`` opens the database, checks the destination answers (C-ECHO, or a DICOMweb search)
    and starts everything in background threads; ``stop()`` ends them. ``wait()`` blocks until
    stopped (or Ctrl-C).
    """

    def __init__(self, cfg: NodeConfig, listen: bool = True, workers: int | None = None,
                 poll_seconds: float = 0.5):
        self.cfg, self.listen, self.poll_seconds = cfg, listen, poll_seconds
        self.n_workers = cfg.workers if workers is None else workers
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server = self.db = self.receiver = None
        self.workers: list[Worker] = []

    def start(self) -> "Node":
        check_destination(self.cfg.ae_title, self.cfg.destination, self.cfg.tls)  # unreachable: one line
        self.db = open_database(self.cfg.db)
        if self.listen:
            self.receiver = Receiver(self.cfg, JobQueue(self.db, lease_seconds=self.cfg.lease_seconds))
            try:
                self.server = start_scp(self.cfg, self.receiver)
            except OSError as exc:
                self.db.close()
                raise MedsightError(f"cannot listen on {self.cfg.host}:{self.cfg.port}: "
                                    f"{exc.strerror or exc}") from None
            self._thread(self._sweep, "medsight-node-sweep")
            log.info("listening as %s on %s:%d for %s", self.cfg.ae_title, self.cfg.host, self.port,
                     ", ".join(self.cfg.allowed_callers))
        models = Models(self.db)
        for i in range(self.n_workers):
            worker = Worker(self.cfg, self.db, models, worker_name(i))
            self.workers.append(worker)
            self._thread(lambda w=worker: w.loop(self.stopping, self.poll_seconds), f"medsight-worker-{i}")
        log.info("%d worker(s) on %s", self.n_workers, self.db)
        return self

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server else self.cfg.port

    def _thread(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _sweep(self) -> None:
        while not self.stopping.wait(min(self.poll_seconds, self.cfg.quiet_seconds / 4)):
            try:
                self.receiver.sweep()
            except MedsightError as exc:
                log.error("releasing quiet series: %s", exc)

    def wait(self) -> None:
        try:
            while not self.stopping.wait(1.0):
                pass
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            with suppress(Exception):
                self.server.shutdown()
            self.server = None
        for thread in self.threads:
            thread.join(timeout=60)
        self.threads = []
        if self.db is not None:
            self.db.close()
            self.db = None
