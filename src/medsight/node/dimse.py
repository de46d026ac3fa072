"""The node's DICOM network pieces (pynetdicom): TLS contexts, and sending results by C-STORE."""

from __future__ import annotations

import logging
import ssl
from typing import Sequence

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from medsight.errors import MedsightError
from medsight.node.config import Destination, Tls

log = logging.getLogger(__name__)
WARNINGS = {0xB000, 0xB006, 0xB007}  # C-STORE "stored with coercion / elements discarded"


class DestinationError(MedsightError):
    """The destination could not be reached, or refused the results."""


def tls_context(tls: Tls | None, server: bool) -> ssl.SSLContext | None:
    """An SSL context from the node's TLS settings; with ``ca`` the peer must present a certificate it signed."""
    if tls is None:
        return None
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    try:
        context = ssl.create_default_context(purpose, cafile=str(tls.ca) if tls.ca else None)
        context.load_cert_chain(str(tls.cert), str(tls.key))
    except (OSError, ssl.SSLError) as exc:
        raise MedsightError(f"tls: cannot load the certificate or key: {getattr(exc, 'strerror', None) or exc}") from None
    if server and tls.ca:
        context.verify_mode = ssl.CERT_REQUIRED
    if not server and not tls.ca:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def _associate(calling: str, destination: Destination, sop_classes: Sequence[str], tls: Tls | None):
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for uid in dict.fromkeys(sop_classes):
        ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    context = tls_context(tls, server=False)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                         tls_args=(context, destination.host) if context else None)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "cannot be reached"
        raise DestinationError(f"destination {destination.ae_title}@{destination.host}:{destination.port} {why}")
    return assoc


def echo(calling: str, destination: Destination, tls: Tls | None = None) -> None:
    """C-ECHO the destination; a :class:`DestinationError` line if it does not answer success."""
    assoc = _associate(calling, destination, [Verification], tls)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0x0000:
        raise DestinationError(f"destination {destination.ae_title}@{destination.host}:{destination.port} "
                               "did not answer C-ECHO")


def send(calling: str, destination: Destination, datasets: Sequence[Dataset], tls: Tls | None = None) -> None:
    """C-STORE ``datasets`` to the destination; a :class:`DestinationError` if any is refused."""
    assoc = _associate(calling, destination, [str(ds.SOPClassUID) for ds in datasets], tls)
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = status.Status if status else None
            if code is None:
                raise DestinationError(f"destination {destination.ae_title}: no answer to C-STORE "
                                       f"of {ds.SOPInstanceUID}")
            if code != 0x0000 and code not in WARNINGS:
                raise DestinationError(f"destination {destination.ae_title} refused {ds.SOPInstanceUID} "
                                       f"(status 0x{code:04X})")
    finally:
        if assoc.is_established:
            assoc.release()
    log.info("sent %d result object(s) to %s", len(datasets), destination.ae_title)


def _stow_client(destination: Destination):
    from medsight.pacs.client import connect

    password = None
    if destination.password_file is not None:
        try:
            password = destination.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise DestinationError(f"destination: cannot read password_file {destination.password_file}: "
                                   f"{exc.strerror or exc}") from None
    return connect(destination.stow_url, destination.user, password)


def check_destination(calling: str, destination: Destination, tls: Tls | None = None) -> None:
    """The destination answers: C-ECHO for an AE, a one-study search (QIDO-RS) for a DICOMweb server."""
    if not destination.is_stow:
        echo(calling, destination, tls)
        return
    from medsight.pacs.client import PacsError, pacs_errors

    try:
        with pacs_errors(f"destination {destination}"):
            _stow_client(destination).search_for_studies(limit=1)
    except PacsError as exc:
        raise DestinationError(str(exc)) from None


def deliver(calling: str, destination: Destination, datasets: Sequence[Dataset], tls: Tls | None = None) -> None:
    """Send the results: C-STORE to an AE, or STOW-RS to a DICOMweb server; a :class:`DestinationError`
    if the destination is down or refuses any of them (the job then waits for its lease to retry)."""
    if not destination.is_stow:
        send(calling, destination, datasets, tls)
        return
    from medsight.pacs.client import PacsError, store

    try:
        store(_stow_client(destination), datasets)
    except PacsError as exc:
        raise DestinationError(f"destination {destination}: {exc}") from None
    log.info("stored %d result object(s) at %s by STOW-RS", len(datasets), destination)
