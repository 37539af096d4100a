import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedxalign.server.credentials import make_credentials
from fedxalign.server.credentials_cli import main, write_connection
from fedxalign.shared.errors import ConfigError


def test_layout_permissions_and_formats(tmp_path):
    make_credentials(tmp_path, ["localhost", "127.0.0.1"], ["eeg_a"])
    for private in ("ca/ca.key", "superlink/server.key", "sites/eeg_a/auth_key"):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) == 0o600, private
    key = serialization.load_ssh_private_key((tmp_path / "sites/eeg_a/auth_key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    pub = serialization.load_ssh_public_key((tmp_path / "sites/eeg_a/auth_key.pub").read_bytes())
    assert pub.public_numbers() == key.public_key().public_numbers()
    ca = x509.load_pem_x509_certificate((tmp_path / "ca/ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "superlink/server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_rerun_never_overwrites_and_new_sites_share_the_ca(tmp_path):
    make_credentials(tmp_path, ["localhost"], ["eeg_a"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    report = make_credentials(tmp_path, ["other-host"], ["eeg_a", "ecg_b"])
    assert all(p.read_bytes() == data for p, data in before.items())
    assert tmp_path / "sites/eeg_a/auth_key" in report.kept
    assert (tmp_path / "sites/ecg_b/ca.crt").read_bytes() == (tmp_path / "ca/ca.crt").read_bytes()


def test_half_a_key_pair_is_an_error(tmp_path):
    make_credentials(tmp_path, ["localhost"], ["eeg_a"])
    (tmp_path / "sites/eeg_a/auth_key.pub").unlink()
    with pytest.raises(ConfigError, match="only one half"):
        make_credentials(tmp_path, ["localhost"], ["eeg_a"])


def test_cli_and_connection(tmp_path, capsys):
    assert main(["make", "--out", str(tmp_path / "c"), "--host", "localhost", "--site", "s1"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["make", "--out", str(tmp_path / "c"), "--site", "../evil"]) == 2
    path = write_connection(tmp_path / "home", "fed", "127.0.0.1:8000", tmp_path / "c/ca/ca.crt")
    assert 'address = "127.0.0.1:8000"' in path.read_text() and "root-certificates" in path.read_text()
    with pytest.raises(ConfigError, match="already has a connection"):
        write_connection(tmp_path / "home", "fed", "127.0.0.1:8000", tmp_path / "c/ca/ca.crt")
