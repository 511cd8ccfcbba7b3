"""The trusted third party: certificate authority, directory, trust policy,
request checks and storage. Uses `broker`, never `client`.

Everything a caller needs is exported here; modules starting with `_` are
internal and may change.
"""

from escrow_worker._bundle import CertificateBundle, parse_bundle
from escrow_worker._ca import CertificateAuthority, EscrowPaths, load_ca, load_escrow_key
from escrow_worker._certcheck import (
    check_certificate,
    check_crl,
    check_encryption_certificate,
    check_signing_certificate,
)
from escrow_worker._csr import CertificateRequest, build_csr, parse_csr
from escrow_worker._db import SCHEMA, open_db, transaction
from escrow_worker._directory import (
    CertificateRecord,
    DirectoryAnswer,
    UserRecord,
    current_crl,
    get_user,
    list_users,
    lookup_encryption_certificate,
)
from escrow_worker._files import read_bytes, write_bytes
from escrow_worker._identity import (
    Identity,
    IdentityKeys,
    dump_identity,
    generate_keys,
    load_identity,
    load_identity_bytes,
    read_identity_file,
    write_identity_file,
)
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
from escrow_worker._policy import Decision, Party, TrustPolicy, load_policy, may_send
from escrow_worker._profile import (
    OID_CSR_X25519_KEY,
    OID_EKU_ENCRYPTION,
    OID_EKU_ESCROW,
    OID_EKU_SIGNING,
    OID_POLICY,
    Role,
    common_name,
    fingerprint,
    load_certificate,
    load_crl,
)
from escrow_worker._replay import (
    MemoryReplayStore,
    ReplayKey,
    ReplayStore,
    SqliteReplayStore,
    check_and_record,
)
from escrow_worker._requests import (
    VerifiedRequest,
    accept_request,
    authenticate_request,
    check_times,
)
from escrow_worker.errors import (
    CertificateRejected,
    CertReason,
    DirectoryError,
    EscrowError,
    IdentityFileError,
    RequestReason,
    RequestRejected,
)
from escrow_worker.service import EscrowService, Outcome, Outgoing
from escrow_worker.worker import EscrowWorker

__all__ = [
    "OID_CSR_X25519_KEY",
    "OID_EKU_ENCRYPTION",
    "OID_EKU_ESCROW",
    "OID_EKU_SIGNING",
    "OID_POLICY",
    "SCHEMA",
    "CertReason",
    "CertificateAuthority",
    "CertificateBundle",
    "CertificateRecord",
    "CertificateRejected",
    "CertificateRequest",
    "Decision",
    "DirectoryAnswer",
    "DirectoryError",
    "Escrow",
    "EscrowCertificates",
    "EscrowError",
    "EscrowPaths",
    "EscrowService",
    "EscrowWorker",
    "Identity",
    "IdentityFileError",
    "IdentityKeys",
    "MemoryReplayStore",
    "Outcome",
    "Outgoing",
    "Party",
    "ReplayKey",
    "ReplayStore",
    "RequestReason",
    "RequestRejected",
    "Role",
    "Rotation",
    "SqliteReplayStore",
    "TrustPolicy",
    "UnknownMasterKey",
    "UserRecord",
    "VerifiedRequest",
    "accept_request",
    "authenticate_request",
    "build_csr",
    "check_and_record",
    "check_certificate",
    "check_crl",
    "check_encryption_certificate",
    "check_signing_certificate",
    "check_times",
    "common_name",
    "current_crl",
    "dump_identity",
    "fingerprint",
    "generate_keys",
    "get_user",
    "init_escrow",
    "list_users",
    "load_ca",
    "load_certificate",
    "load_crl",
    "load_escrow_key",
    "load_identity",
    "load_identity_bytes",
    "load_policy",
    "lookup_encryption_certificate",
    "may_send",
    "open_db",
    "open_escrow",
    "parse_bundle",
    "parse_csr",
    "publish_crl",
    "read_bytes",
    "read_identity_file",
    "register_user",
    "revoke_user",
    "rotate_master_key",
    "sign_request",
    "transaction",
    "write_bytes",
    "write_identity_file",
]
