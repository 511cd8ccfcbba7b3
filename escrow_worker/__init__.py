"""The trusted third party: the certificate authority, the directory and trust
policy, the escrow's state, the request handlers and the worker that serves
them, and the operator's commands. Uses `broker`, never `client`.

Exported here, once, is what an operator's program needs: `EscrowService` and
`EscrowWorker` to serve, the operator's actions (`init_escrow`, `register_user`,
...), the directory and policy queries, and the errors. Everything else is
internal and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from escrow_worker.ca.authority import load_ca
    from escrow_worker.ca.directory import CertificateRecord, UserRecord, get_user, list_users
    from escrow_worker.ca.operator import (
        Escrow,
        EscrowCertificates,
        init_escrow,
        open_escrow,
        publish_crl,
        register_user,
        revoke_user,
        sign_request,
    )
    from escrow_worker.ca.policy import Decision, TrustPolicy, load_policy, may_send
    from escrow_worker.errors import DirectoryError, EscrowError, RequestReason, RequestRejected
    from escrow_worker.service import EscrowService
    from escrow_worker.state.masterkey import Rotation, UnknownMasterKey, rotate_master_key
    from escrow_worker.worker import EscrowWorker

_EXPORTS = {
    "CertificateRecord": "escrow_worker.ca.directory",
    "Decision": "escrow_worker.ca.policy",
    "DirectoryError": "escrow_worker.errors",
    "Escrow": "escrow_worker.ca.operator",
    "EscrowCertificates": "escrow_worker.ca.operator",
    "EscrowError": "escrow_worker.errors",
    "EscrowService": "escrow_worker.service",
    "EscrowWorker": "escrow_worker.worker",
    "RequestReason": "escrow_worker.errors",
    "RequestRejected": "escrow_worker.errors",
    "Rotation": "escrow_worker.state.masterkey",
    "TrustPolicy": "escrow_worker.ca.policy",
    "UnknownMasterKey": "escrow_worker.state.masterkey",
    "UserRecord": "escrow_worker.ca.directory",
    "get_user": "escrow_worker.ca.directory",
    "init_escrow": "escrow_worker.ca.operator",
    "list_users": "escrow_worker.ca.directory",
    "load_ca": "escrow_worker.ca.authority",
    "load_policy": "escrow_worker.ca.policy",
    "may_send": "escrow_worker.ca.policy",
    "open_escrow": "escrow_worker.ca.operator",
    "publish_crl": "escrow_worker.ca.operator",
    "register_user": "escrow_worker.ca.operator",
    "revoke_user": "escrow_worker.ca.operator",
    "rotate_master_key": "escrow_worker.state.masterkey",
    "sign_request": "escrow_worker.ca.operator",
}

__all__ = [
    "CertificateRecord",
    "Decision",
    "DirectoryError",
    "Escrow",
    "EscrowCertificates",
    "EscrowError",
    "EscrowService",
    "EscrowWorker",
    "RequestReason",
    "RequestRejected",
    "Rotation",
    "TrustPolicy",
    "UnknownMasterKey",
    "UserRecord",
    "get_user",
    "init_escrow",
    "list_users",
    "load_ca",
    "load_policy",
    "may_send",
    "open_escrow",
    "publish_crl",
    "register_user",
    "revoke_user",
    "rotate_master_key",
    "sign_request",
]

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
