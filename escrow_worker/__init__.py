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
    from escrow_worker._directory import CertificateRecord, UserRecord, get_user, list_users
    from escrow_worker._masterkey import Rotation, UnknownMasterKey, rotate_master_key
    from escrow_worker._operator import (
        Escrow,
        EscrowCertificates,
        init_escrow,
        open_escrow,
        publish_crl,
        register_user,
        revoke_user,
        sign_request,
    )
    from escrow_worker._policy import Decision, TrustPolicy, load_policy, may_send
    from escrow_worker.errors import DirectoryError, EscrowError, RequestReason, RequestRejected
    from escrow_worker.service import EscrowService
    from escrow_worker.worker import EscrowWorker

_EXPORTS = {
    "CertificateRecord": "escrow_worker._directory",
    "Decision": "escrow_worker._policy",
    "DirectoryError": "escrow_worker.errors",
    "Escrow": "escrow_worker._operator",
    "EscrowCertificates": "escrow_worker._operator",
    "EscrowError": "escrow_worker.errors",
    "EscrowService": "escrow_worker.service",
    "EscrowWorker": "escrow_worker.worker",
    "RequestReason": "escrow_worker.errors",
    "RequestRejected": "escrow_worker.errors",
    "Rotation": "escrow_worker._masterkey",
    "TrustPolicy": "escrow_worker._policy",
    "UnknownMasterKey": "escrow_worker._masterkey",
    "UserRecord": "escrow_worker._directory",
    "get_user": "escrow_worker._directory",
    "init_escrow": "escrow_worker._operator",
    "list_users": "escrow_worker._directory",
    "load_policy": "escrow_worker._policy",
    "may_send": "escrow_worker._policy",
    "open_escrow": "escrow_worker._operator",
    "publish_crl": "escrow_worker._operator",
    "register_user": "escrow_worker._operator",
    "revoke_user": "escrow_worker._operator",
    "rotate_master_key": "escrow_worker._masterkey",
    "sign_request": "escrow_worker._operator",
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
