"""Own certificate authorities and server certificates (`tilltap store tls`, `tilltap ledger tls`).

A shop has no public name to get a certificate for, so each store gets its own CA: the
broker presents a certificate the CA signed for the broker's address, and the gateway and
the terminals pin that CA (`--broker-ca`, the board's `broker_ca`), so a rogue broker or a
listener on the shop's network cannot pose as the store's. Keys are ECDSA P-256; the CA key
stays with the operator (mode 0600) and is needed only to issue the next certificate.

    ca.pem, ca.key          the store's CA (ten years)
    broker.pem, broker.key  the broker's certificate and key (two years), for `host`

The central ledger gets the same from `tilltap ledger tls` (its own CA, ``ledger.pem``):
gateways and operators pin that CA (`--ledger-ca`).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 730
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


class TlsError(Exception):
    """Bad input for the certificates (an address that is neither an IP nor a host name)."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tilltap store"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if not host or len(host) > 253 or not all(
            label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels):
        raise TlsError(f"{host!r} is neither an IP address nor a host name")
    return x509.DNSName(host)


def _write(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_store_tls(out: Path, host: str, store: str = "store",
                   now: datetime.datetime | None = None) -> dict[str, str]:
    """Write the CA and the broker certificate for `host` into `out`; returns their paths."""
    return make_server_tls(out, host, f"tilltap {store} CA", "broker", now)


def make_server_tls(out: Path, host: str, ca_label: str, server: str,
                    now: datetime.datetime | None = None) -> dict[str, str]:
    """Write a new CA (`ca_label` its name) and `server`.pem/.key for `host` into `out`."""
    san = _san(host)
    now = now or datetime.datetime.now(datetime.UTC)
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(ca_label)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server_key = ec.generate_private_key(ec.SECP256R1())
    certificate = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca_name)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now)
              .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
              .add_extension(x509.SubjectAlternativeName([san]), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    names = ("ca.pem", "ca.key", f"{server}.pem", f"{server}.key")
    paths = {name: out / name for name in names}
    _write(paths["ca.pem"], ca.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)
    _write(paths["ca.key"], _key_pem(ca_key), PRIVATE_MODE)
    _write(paths[f"{server}.pem"], certificate.public_bytes(serialization.Encoding.PEM),
           PUBLIC_MODE)
    _write(paths[f"{server}.key"], _key_pem(server_key), PRIVATE_MODE)
    return {name: str(path) for name, path in paths.items()}


def mosquitto_lines(paths: dict[str, str]) -> list[str]:
    """The lines that make a Mosquitto listener speak TLS with the store's certificate."""
    return [f"cafile {paths['ca.pem']}", f"certfile {paths['broker.pem']}",
            f"keyfile {paths['broker.key']}", "tls_version tlsv1.2"]
