"""Certificates and keys of one sandbox control plane, generated per state dir.

Layout under ``<state>/pki`` (what kubeadm makes, reduced to what a single-node, loopback-only
control plane needs)::

    ca.crt ca.key                  cluster CA (signs every certificate below)
    apiserver.crt apiserver.key    kube-apiserver serving cert (127.0.0.1, localhost, kubernetes.default.svc...)
    sa.key sa.pub                  service-account token signing key pair (RSA 2048)
    <user>.crt <user>.key          client certs: admin (system:masters), kube-controller-manager,
                                   kube-scheduler, apiserver-kubelet-client

Everything is made with ``cryptography`` (ECDSA P-256 for TLS, RSA for the service-account key,
as kube-apiserver's ``--service-account-key-file`` accepts both), valid for 365 days. Files are
kept when present, so a restarted control plane keeps its identity.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Client identities: file stem → (common name = user, organisation = group or None).
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("kubernetes-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}
VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files (see the module docstring)."""

    root: Path

    def crt(self, name: str) -> Path:
        """``<root>/<name>.crt``."""
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        """``<root>/<name>.key``."""
        return self.root / f"{name}.key"

    @property
    def ca(self) -> Path:
        """The CA certificate."""
        return self.crt("ca")

    @property
    def sa_key(self) -> Path:
        """Service-account signing key (private)."""
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        """Service-account verification key (public)."""
        return self.root / "sa.pub"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY))


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attrs)


def _make_ca(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("modelops-sandbox-ca")
    cert = (_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(pki.key("ca"), key)
    pki.ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(pki: Pki, stem: str, subject: x509.Name, *, server_names: list[str] | None = None) -> None:
    ca_key = _load_key(pki.key("ca"))
    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (_builder(subject, ca_cert.subject, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server_names:
        sans: list[x509.GeneralName] = []
        for name in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(pki.key(stem), key)
    pki.crt(stem).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_pki(root: Path, service_ip: str, address: str = "127.0.0.1") -> Pki:
    """Create (or keep) the CA, the apiserver cert, the client certs and the SA key pair.

    Args:
        root: directory for the files (created, mode 0700).
        service_ip: the ``kubernetes`` Service's cluster IP (first address of the service range),
            added to the apiserver certificate's SANs as kube-apiserver expects.
        address: the apiserver's address (also a SAN).

    Returns the :class:`Pki` paths.
    """
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    pki = Pki(root)
    if not pki.ca.exists():
        _make_ca(pki)
    if not pki.crt("apiserver").exists():
        names = [*dict.fromkeys(["127.0.0.1", address]), "localhost", service_ip, "kubernetes", "kubernetes.default",
                 "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"]
        _issue(pki, "apiserver", _name("kube-apiserver"), server_names=names)
    for stem, (user, group) in CLIENTS.items():
        if not pki.crt(stem).exists():
            _issue(pki, stem, _name(user, group))
    if not pki.sa_key.exists():
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(pki.sa_key, sa)
        pki.sa_pub.write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def ensure_client_cert(pki: Pki, stem: str, user: str, group: str | None = None) -> tuple[Path, Path]:
    """A client certificate signed by the sandbox CA for ``user`` (common name) in ``group``
    (organisation), made once; returns ``(cert, key)`` paths. Used by the real node's kubelet
    (``system:node:<name>`` in ``system:nodes``, what the Node authorizer expects)."""
    if not pki.crt(stem).exists():
        _issue(pki, stem, _name(user, group))
    return pki.crt(stem), pki.key(stem)


def ensure_server_cert(pki: Pki, stem: str, names: list[str]) -> tuple[Path, Path]:
    """A serving certificate signed by the sandbox CA for ``names`` (IPs or DNS names), made once;
    returns ``(cert, key)`` paths. Used by the kubelet's log endpoint."""
    if not pki.crt(stem).exists():
        _issue(pki, stem, _name(stem), server_names=names)
    return pki.crt(stem), pki.key(stem)
