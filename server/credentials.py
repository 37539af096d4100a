"""The federation's credentials, made with `cryptography`: a CA, the SuperLink's TLS certificate and
one authentication key pair per site (EC P-384, OpenSSH format, as Flower's SuperNode auth expects).

Existing files are never overwritten: re-running keeps them and says so, and adding a site later
signs nothing new with a new CA (deployed sites keep trusting the same `ca.crt`). Private keys are
written with owner-only permissions (0600).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedxalign.shared.errors import ConfigError

VALID_DAYS = 825


@dataclass
class CredentialReport:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def _write_private(path: Path, data: bytes, report: CredentialReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # O_EXCL: never clobber a key
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    report.written.append(path)


def _write_public(path: Path, data: bytes, report: CredentialReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as fh:
        fh.write(data)
    report.written.append(path)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FedXAlign federation"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def ensure_ca(root: Path, report: CredentialReport) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    cert_path, key_path = root / "ca" / "ca.crt", root / "ca" / "ca.key"
    if cert_path.exists() and key_path.exists():
        report.kept += [cert_path, key_path]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    if cert_path.exists() or key_path.exists():
        raise ConfigError(f"{root / 'ca'} holds only one of ca.crt/ca.key; restore the other or remove both deliberately")
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    cert = (x509.CertificateBuilder().subject_name(_name("FedXAlign CA")).issuer_name(_name("FedXAlign CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5)).not_valid_after(_now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), report)
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM), report)
    return cert, key


def ensure_server_cert(root: Path, hosts: list[str], ca: tuple[x509.Certificate, rsa.RSAPrivateKey], report: CredentialReport) -> None:
    """The SuperLink's certificate, valid for every given host name and IP address (subject alternative names)."""
    cert_path, key_path = root / "superlink" / "server.crt", root / "superlink" / "server.key"
    if cert_path.exists() and key_path.exists():
        report.kept += [cert_path, key_path]
        return
    if not hosts:
        raise ConfigError("the SuperLink certificate needs at least one host name or IP address")
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    ca_cert, ca_key = ca
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5)).not_valid_after(_now() + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), report)
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM), report)


def ensure_site_keys(root: Path, site: str, report: CredentialReport) -> tuple[Path, Path]:
    """`sites/<site>/auth_key` (private, OpenSSH) and `auth_key.pub`; plus a copy of `ca.crt` to hand over."""
    folder = root / "sites" / site
    priv, pub = folder / "auth_key", folder / "auth_key.pub"
    if priv.exists() and pub.exists():
        report.kept += [priv, pub]
    elif priv.exists() or pub.exists():
        raise ConfigError(f"{folder} holds only one half of the key pair; restore it or remove both deliberately")
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        _write_private(priv, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               serialization.NoEncryption()), report)
        _write_public(pub, key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                      + f" {site}\n".encode(), report)
    ca_copy = folder / "ca.crt"
    if not ca_copy.exists():
        _write_public(ca_copy, (root / "ca" / "ca.crt").read_bytes(), report)
    return priv, pub


def make_credentials(root: str | Path, hosts: list[str], sites: list[str]) -> CredentialReport:
    root = Path(root)
    bad = [s for s in sites if not s or "/" in s or s.startswith(".")]
    if bad:
        raise ConfigError(f"site names {bad} are not usable as folder names")
    report = CredentialReport()
    ca = ensure_ca(root, report)
    ensure_server_cert(root, hosts, ca, report)
    for site in sites:
        ensure_site_keys(root, site, report)
    return report
