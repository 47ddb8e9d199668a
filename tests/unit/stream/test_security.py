"""The security settings, as the clients themselves take them: aiokafka's producer and
consumer, kafka-python's configuration, and the Faust app's credentials."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from stream.errors import SettingsError
from stream.security import connection, faust_credentials, security
from stream.settings import Settings


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    client = ca.issue_cert("ecm-worker")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    client.cert_chain_pems[0].write_to_path(str(d / "client.pem"))
    return {name: d / f"{name.replace('_', '.')}" for name in ("ca_pem", "client_pem",
                                                                "client_key")}


def test_plaintext_by_default() -> None:
    assert connection(Settings(broker="a:1,b:2")) == {
        "bootstrap_servers": ["a:1", "b:2"], "security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


@pytest.mark.parametrize("env, fix", [
    ({"ECM_SECURITY_PROTOCOL": "TLS"}, "ECM_SECURITY_PROTOCOL"),
    ({"ECM_SECURITY_PROTOCOL": "SASL_SSL", "ECM_SASL_PASSWORD": "p"}, "ECM_SASL_USERNAME"),
    ({"ECM_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "ECM_SASL_USERNAME": "u"},
     "ECM_SASL_PASSWORD"),
    ({"ECM_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "ECM_SASL_USERNAME": "u",
      "ECM_SASL_PASSWORD": "p", "ECM_SASL_PASSWORD_FILE": "/f"}, "ECM_SASL_PASSWORD"),
    ({"ECM_SASL_MECHANISM": "GSSAPI"}, "ECM_SASL_MECHANISM"),
    ({"ECM_SECURITY_PROTOCOL": "SSL", "ECM_SSL_CERTFILE": "/c"}, "ECM_SSL_KEYFILE"),
    ({"ECM_SSL_CAFILE": "/ca"}, "does not use TLS"),
])
def test_settings_that_cannot_connect_are_refused(env: dict[str, str], fix: str) -> None:
    with pytest.raises(SettingsError, match=fix):
        Settings.from_env(env)


def test_sasl_scram_over_tls_in_every_client(certs: dict[str, Path]) -> None:
    s = Settings.from_env({
        "ECM_BROKER": "kafka.example:9093", "ECM_SECURITY_PROTOCOL": "SASL_SSL",
        "ECM_SASL_MECHANISM": "SCRAM-SHA-512", "ECM_SASL_USERNAME": "ecm",
        "ECM_SASL_PASSWORD": "correct horse", "ECM_SSL_CAFILE": str(certs["ca_pem"])})
    kwargs = connection(s)
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert kwargs["ssl_context"].check_hostname
    # aiokafka's clients take them as they are and hold them for the connection.
    async def made() -> list[object]:
        return [AIOKafkaProducer(**kwargs).client, AIOKafkaConsumer(**kwargs)._client]

    for c in asyncio.run(made()):
        assert (c._security_protocol, c._sasl_mechanism, c._sasl_plain_username,
                c._sasl_plain_password) == ("SASL_SSL", "SCRAM-SHA-512", "ecm", "correct horse")
        assert c._ssl_context is kwargs["ssl_context"]
    # kafka-python's clients (the simulator, watch, the report, topics) know every name.
    for cls in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert set(kwargs) <= set(cls.DEFAULT_CONFIG), cls
    # Faust gives its producer, consumer and admin client the same.
    auth = credentials_to_aiokafka_auth(faust_credentials(s))
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {
        k: v for k, v in security(s).items() if k != "ssl_context"}
    assert auth["ssl_context"] is not None


def test_mutual_tls_presents_the_client_certificate(certs: dict[str, Path]) -> None:
    s = Settings(security_protocol="SSL", ssl_cafile=str(certs["ca_pem"]),
                 ssl_certfile=str(certs["client_pem"]), ssl_keyfile=str(certs["client_key"]),
                 ssl_check_hostname=False)
    ctx = security(s)["ssl_context"]
    assert not ctx.check_hostname
    assert "sasl_mechanism" not in security(s)
    assert credentials_to_aiokafka_auth(faust_credentials(s))["security_protocol"] == "SSL"
    bad = s.with_(ssl_keyfile=str(certs["ca_pem"]))  # a certificate is no key
    with pytest.raises(ssl.SSLError):
        security(bad)


def test_the_password_is_read_from_its_file_and_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-from-file\n")
    s = Settings.from_env({"ECM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "ECM_SASL_MECHANISM": "SCRAM-SHA-256",
                           "ECM_SASL_USERNAME": "ecm",
                           "ECM_SASL_PASSWORD_FILE": str(secret)})
    assert security(s)["sasl_plain_password"] == "s3cret-from-file"
    secret.write_text("rotated")  # the next client made reads the new one
    assert security(s)["sasl_plain_password"] == "rotated"
    inline = s.with_(sasl_password_file="", sasl_password="s3cret-inline")
    for shown in (repr(inline), str(inline), repr(faust_credentials(inline))):
        assert "s3cret" not in shown
    missing = s.with_(sasl_password_file=str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match="ECM_SASL_PASSWORD_FILE cannot be read"):
        security(missing)


def test_other_secrets_are_not_printed_either() -> None:
    s = Settings(desk_tokens="duty:token-123456", report_key="report-key-abcdef")
    assert "token-123456" not in repr(s) and "report-key-abcdef" not in repr(s)
