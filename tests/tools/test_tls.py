"""`tilltap store tls`: a CA and a broker certificate that verifies for the broker's address
under that CA only; a bad address is one line and exit 2."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from tools.cli import main


def test_the_broker_certificate_is_signed_by_the_store_ca_for_its_address(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "tls", "--out", str(tmp_path), "--host", "192.168.7.2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mosquitto"][0] == f"cafile {tmp_path / 'ca.pem'}"
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    broker = x509.load_pem_x509_certificate((tmp_path / "broker.pem").read_bytes())
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["192.168.7.2"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in ("ca.key", "broker.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600


def test_a_name_is_a_dns_name_and_a_bad_address_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "tls", "--out", str(tmp_path / "a"), "--host", "broker.shop"]) == 0
    capsys.readouterr()
    broker = x509.load_pem_x509_certificate((tmp_path / "a" / "broker.pem").read_bytes())
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.shop"]
    assert main(["store", "tls", "--out", str(tmp_path / "b"), "--host", "bad host!"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tilltap store tls:") and len(err.strip().splitlines()) == 1
