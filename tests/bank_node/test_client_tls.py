"""The node presents its client certificate to a portal that asks for mutual TLS, trusts a
private CA through REQUESTS_CA_BUNDLE, and refuses a half-configured certificate."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bank_node.config import ConfigError, load_config
from bank_node.portal_client import BankClient, PortalError

REST = (
    'portal_url = "https://localhost"\nbank = "alpha"\ncredential_file = "credential"\n'
    'signing_key_file = "signing.key"\nsecret_context_file = "consortium.secret"\n'
    'ckks_params_file = "ckks_params.json"\ndata_file = "data.csv"\nstate_dir = "state"\n'
)
# Common names of the client certificates the test portal saw.
SEEN: list[str] = []


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer or (_name(subject), key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), False
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A private CA, a server certificate for localhost and a client certificate."""
    ca_cert, ca_key = _issue("consortium test CA", None, None)
    issuer = (ca_cert.subject, ca_key)
    _write(tmp_path / "ca", ca_cert, ca_key)
    _write(tmp_path / "server", *_issue("localhost", issuer, ExtendedKeyUsageOID.SERVER_AUTH))
    _write(tmp_path / "client", *_issue("bank-alpha", issuer, ExtendedKeyUsageOID.CLIENT_AUTH))
    return tmp_path


class _NoRound(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 204 (no round in flight), noting who the client said it was."""

    def do_GET(self) -> None:
        peer = self.connection.getpeercert() or {}
        SEEN.extend(value for rdn in peer.get("subject", ()) for key, value in rdn)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def mtls_portal(pki: Path) -> Iterator[str]:
    """An HTTPS server on localhost that refuses any client without a CA-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    context.load_verify_locations(pki / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoRound)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_node_presents_its_client_certificate_and_trusts_the_private_ca(
    pki: Path, mtls_portal: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki / "ca.crt"))
    cert = (str(pki / "client.crt"), str(pki / "client.key"))
    SEEN.clear()
    client = BankClient(mtls_portal, "token", max_retries=0, client_cert=cert)
    assert client.current_round() is None
    assert SEEN == ["bank-alpha"]


def test_without_a_client_certificate_the_mtls_portal_cannot_be_reached(
    pki: Path, mtls_portal: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki / "ca.crt"))
    with pytest.raises(PortalError, match="failed after 1 attempts"):
        BankClient(mtls_portal, "token", max_retries=0).current_round()


def test_without_the_private_ca_the_portal_certificate_is_not_trusted(
    pki: Path, mtls_portal: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert = (str(pki / "client.crt"), str(pki / "client.key"))
    with pytest.raises(PortalError, match="SSLError"):
        BankClient(mtls_portal, "token", max_retries=0, client_cert=cert).current_round()


def test_the_config_gives_the_client_certificate_and_key_as_a_pair(pki: Path):
    path = pki / "node.toml"
    path.write_text(
        REST + 'tls_client_cert_file = "client.crt"\ntls_client_key_file = "client.key"\n'
    )
    assert load_config(path).client_cert == (str(pki / "client.crt"), str(pki / "client.key"))
    path.write_text(REST)
    assert load_config(path).client_cert is None


@pytest.mark.parametrize("field", ["tls_client_cert_file", "tls_client_key_file"])
def test_a_certificate_without_its_key_or_a_key_without_its_certificate_is_refused(
    tmp_path: Path, field: str
):
    path = tmp_path / "node.toml"
    path.write_text(REST + f'{field} = "client.pem"\n')
    with pytest.raises(ConfigError, match="tls_client_cert_file and tls_client_key_file go"):
        load_config(path)


def test_a_missing_certificate_file_is_refused_naming_the_field_and_the_fix(tmp_path: Path):
    path = tmp_path / "node.toml"
    path.write_text(REST + 'tls_client_cert_file = "nope.crt"\ntls_client_key_file = "nope.key"\n')
    with pytest.raises(ConfigError, match=r"tls_client_cert_file = .*no such file; put the PEM"):
        assert load_config(path).client_cert
