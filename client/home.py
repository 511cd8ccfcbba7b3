"""A user's local identities, kept in its home directory (`--home`, CONSIGN_HOME,
default ~/.consign): `NAME.identity` (sealed keys, later with certificates) and
`NAME.csr` (the request to hand to the operator).

`create` makes the keys and the request; `import_file` completes the identity
with the operator's certificate bundle (after checking it) or installs an
identity file the operator wrote. What `broker` raises becomes a `ClientError`
(`client.errors._as_client_errors`). This module must never write a private key
unsealed and never accept certificates that do not match the keys it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from broker.canonical import raw_public_key
from broker.files import read_bytes, write_bytes
from broker.pki.bundle import parse_bundle
from broker.pki.checks import check_encryption_certificate, check_signing_certificate
from broker.pki.csr import build_csr
from broker.pki.identity import (
    Identity,
    IdentityKeys,
    dump_identity,
    generate_keys,
    load_identity_bytes,
)
from broker.pki.profile import common_name, fingerprint
from client.errors import IdentityError, UntrustedCertificate, _as_client_errors

__all__ = ["DEFAULT_HOME", "CreatedRequest", "IdentityHome", "load_identity"]

DEFAULT_HOME = Path("~/.consign")
IDENTITY_SUFFIX = ".identity"


@dataclass(frozen=True)
class CreatedRequest:
    name: str
    identity_path: Path
    request_path: Path
    request_pem: bytes


def load_identity(path: Path, passphrase: bytes) -> Identity:
    """Load a complete identity file (keys, certificates, CA certificate) for an
    agent; raises IdentityError naming why not (wrong passphrase, damaged, ...)."""
    with _as_client_errors():
        identity = load_identity_bytes(read_bytes(path, "identity file"), passphrase)
    if not isinstance(identity, Identity):
        raise IdentityError(
            "inconsistent",
            f"{path} holds keys but no certificates yet",
            "send the certificate request to the operator, then `consign id import`",
        )
    return identity


def _normalise_fingerprint(value: str) -> str:
    return value.replace(":", "").strip().lower()


class IdentityHome:
    def __init__(self, root: Path, *, log_n: int | None = None) -> None:
        self.root = root.expanduser()
        self._log_n = log_n  # None: the default scrypt cost; tests pass a cheaper one

    def _seal(self, identity: Identity | IdentityKeys, passphrase: bytes) -> bytes:
        if self._log_n is None:
            return dump_identity(identity, passphrase)
        return dump_identity(identity, passphrase, log_n=self._log_n)

    def identity_path(self, name: str) -> Path:
        return self.root / f"{name}{IDENTITY_SUFFIX}"

    def request_path(self, name: str) -> Path:
        return self.root / f"{name}.csr"

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name[: -len(IDENTITY_SUFFIX)] for p in self.root.glob(f"*{IDENTITY_SUFFIX}")
        )

    def resolve(self, name: str | None) -> str:
        """The identity meant: `name`, or the only one in the home directory."""
        names = self.names()
        if name is not None:
            if name not in names:
                raise IdentityError(
                    "missing",
                    f"no identity {name!r} in {self.root}",
                    "run `consign id create NAME` or `consign id import FILE`",
                )
            return name
        if len(names) == 1:
            return names[0]
        if not names:
            raise IdentityError(
                "missing",
                f"no identity in {self.root}",
                "run `consign id create NAME`, or check --home / CONSIGN_HOME",
            )
        raise IdentityError(
            "missing",
            f"several identities in {self.root}: {', '.join(names)}",
            "name the one you mean",
        )

    def load(self, name: str, passphrase: bytes) -> Identity | IdentityKeys:
        with _as_client_errors():
            data = read_bytes(self.identity_path(name), "identity file")
            return load_identity_bytes(data, passphrase)

    def create(self, name: str, passphrase: bytes) -> CreatedRequest:
        """Generate the keys (sealed under `passphrase`) and the request."""
        with _as_client_errors():
            keys = generate_keys(name)
            if self.identity_path(name).exists():
                raise IdentityError(
                    "exists",
                    f"an identity {name!r} already exists in {self.root}",
                    "choose another name or another --home",
                )
            request = build_csr(keys)
            write_bytes(
                self.identity_path(name),
                self._seal(keys, passphrase),
                private=True,
            )
            write_bytes(self.request_path(name), request, private=False, overwrite=True)
        return CreatedRequest(name, self.identity_path(name), self.request_path(name), request)

    def import_file(
        self, data: bytes, passphrase: bytes, *, now: datetime, ca_fingerprint: str | None = None
    ) -> Identity:
        """Complete a pending identity with the operator's certificate bundle, or
        install an identity file the operator wrote (`consign escrow register`)."""
        with _as_client_errors():
            if data.lstrip().startswith(b"{"):
                identity = load_identity_bytes(data, passphrase)
                if not isinstance(identity, Identity):
                    raise IdentityError(
                        "inconsistent",
                        "the identity file has no certificates",
                        "import the certificate bundle from the operator instead",
                    )
                self._pin(identity.ca_certificate, ca_fingerprint)
                target = self.identity_path(identity.name)
                if target.exists():
                    raise IdentityError(
                        "exists",
                        f"an identity {identity.name!r} already exists in {self.root}",
                        f"it is imported already (`consign id show {identity.name}`); to "
                        f"replace it, move {target} away first, or import into another --home",
                    )
                write_bytes(target, data, private=True)
                return identity
            return self._complete(data, passphrase, now=now, ca_fingerprint=ca_fingerprint)

    @staticmethod
    def _pin(ca: x509.Certificate, expected: str | None) -> None:
        if expected is not None and fingerprint(ca) != _normalise_fingerprint(expected):
            raise UntrustedCertificate(
                "untrusted_issuer",
                "the CA certificate is not the one whose fingerprint you gave",
                "compare the CA fingerprint with the operator over a channel you trust",
            )

    def _complete(
        self, data: bytes, passphrase: bytes, *, now: datetime, ca_fingerprint: str | None
    ) -> Identity:
        bundle = parse_bundle(data)
        self._pin(bundle.ca, ca_fingerprint)
        try:
            bundle.ca.verify_directly_issued_by(bundle.ca)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise UntrustedCertificate(
                "untrusted_issuer",
                "the bundle's CA certificate is not self-signed",
                "ask the operator for the bundle again",
            ) from exc
        check_signing_certificate(bundle.signing, ca=bundle.ca, crl=bundle.crl, now=now)
        name = common_name(bundle.signing.subject)
        check_encryption_certificate(
            bundle.encryption, ca=bundle.ca, crl=bundle.crl, now=now, expected_name=name
        )
        pending = self.load(self.resolve(name), passphrase)
        if isinstance(pending, Identity):
            raise IdentityError(
                "exists",
                f"identity {name!r} already has its certificates",
                "nothing to import; see `consign id show`",
            )
        held = (pending.signing_key.public_key(), pending.encryption_key.public_key())
        certified = (bundle.signing.public_key(), bundle.encryption.public_key())
        if list(map(raw_public_key, held)) != list(map(raw_public_key, certified)):
            raise IdentityError(
                "mismatch",
                f"the certificates are not for the keys of {name!r} in {self.root}",
                "import the bundle made from this identity's request",
            )
        identity = Identity(
            name,
            pending.signing_key,
            pending.encryption_key,
            bundle.signing,
            bundle.encryption,
            bundle.ca,
        )
        write_bytes(
            self.identity_path(name),
            self._seal(identity, passphrase),
            private=True,
            overwrite=True,
        )
        return identity
