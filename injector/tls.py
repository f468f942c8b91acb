"""TLS for a control plane that leaves the host: a per-run CA, a server certificate for the
master's address and one client certificate that every client of the run presents.

The CA's private key signs the two certificates and is then dropped: it is never written
anywhere, so nobody (pmctl included) can mint another certificate the run's Redis trusts, and
the CA is valid for ``VALID_FOR`` only. Every file is written 0600. ``cryptography`` is imported
only to make a bundle (the controller); clients need only the files and the stdlib's ``ssl``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TLS_DIR_ENV = "PMCTL_CONTROL_TLS_DIR"  # where a client finds ca.crt, client.crt, client.key
VALID_FOR = dt.timedelta(days=2)
# Hosts' clocks may lag the controller's: the certificates are valid from a little earlier.
CLOCK_SKEW = dt.timedelta(hours=1)
CA_NAME = "ca.crt"
_FILES = {"server": ("server.crt", "server.key"), "client": ("client.crt", "client.key")}

Role = Literal["server", "client"]


@dataclass(frozen=True)
class TlsFiles:
    """The paths one side of a connection uses: the run's CA and its own cert and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: str | Path, role: Role) -> TlsFiles:
        """The ``role``'s files in ``directory`` (as ``TlsBundle.files`` names them)."""
        d = Path(directory)
        cert, key = _FILES[role]
        return cls(d / CA_NAME, d / cert, d / key)


@dataclass(frozen=True)
class TlsBundle:
    """One run's certificates, PEM text (the CA's key is not part of it: it was dropped)."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def files(self, role: Role) -> dict[str, str]:
        """File name -> PEM text of what the ``role`` needs (both hold the CA)."""
        cert, key = _FILES[role]
        if role == "server":
            return {CA_NAME: self.ca_cert, cert: self.server_cert, key: self.server_key}
        return {CA_NAME: self.ca_cert, cert: self.client_cert, key: self.client_key}


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP or a host name) stays on this host: such a control plane
    needs no TLS."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def make_bundle(server_names: list[str], label: str = "pmctl") -> TlsBundle:
    """A fresh CA and its server and client certificates. The server certificate names every
    entry of ``server_names`` (IP addresses or DNS names) as a subject alternative name, so
    clients check the host they dialled; ``label`` goes into the subject names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not server_names:
        raise ValueError("the server certificate needs at least one name")
    now = dt.datetime.now(dt.timezone.utc)
    start, end = now - CLOCK_SKEW, now + VALID_FOR

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )

    def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def pem_cert(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    ca_name = f"{label} control-plane CA"
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        builder(ca_name, ca_key, ca_name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(x509, sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(subject: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            builder(subject, key, ca_name)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(x509, sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(authority, critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return pem_cert(b.sign(ca_key, hashes.SHA256())), pem_key(key)

    server_cert, server_key = leaf(
        f"{label} control plane", ExtendedKeyUsageOID.SERVER_AUTH,
        [_general_name(x509, n) for n in dict.fromkeys(server_names)],
    )
    client_cert, client_key = leaf(f"{label} client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return TlsBundle(pem_cert(ca_cert), server_cert, server_key, client_cert, client_key)


def write_files(directory: str | Path, files: dict[str, str]) -> Path:
    """Writes ``files`` (name -> text) into ``directory`` (made 0700), each 0600 from its
    creation on; returns the directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    for file_name, text in files.items():
        p = d / file_name
        p.unlink(missing_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    return d


def _general_name(x509, value: str):
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _key_usage(x509, *, sign: bool):
    """A CA signs certificates; a leaf signs its handshakes (ECDSA: digital signature)."""
    return x509.KeyUsage(
        digital_signature=not sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=sign, crl_sign=sign,
        encipher_only=False, decipher_only=False,
    )


def redis_kwargs(files: TlsFiles | None) -> dict[str, object]:
    """redis-py's connection arguments for TLS with ``files``: the server must present a
    certificate of the run's CA for the host dialled, and we present ours ({} without files:
    plain TCP)."""
    if files is None:
        return {}
    return {
        "ssl": True, "ssl_ca_certs": str(files.ca), "ssl_certfile": str(files.cert),
        "ssl_keyfile": str(files.key), "ssl_cert_reqs": "required", "ssl_check_hostname": True,
    }
