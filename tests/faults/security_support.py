"""A real Apache Kafka with SASL/SCRAM-SHA-512 over SSL and an mTLS listener, for the security
tests: certificates are made with `openssl` for each session, nothing is shared with other tests.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from recloop.brokers import ApacheKafkaBroker
from tests.support import require_tool

USER = "alice"
PASSWORD = "s3cr3t-Pa55w0rd-7f1c9e"
"""Distinctive, so a grep of every output for it cannot match anything by chance."""


@dataclass(frozen=True)
class Pki:
    """PEM files: a trusted CA, the broker's and a client's key pairs, and an untrusted CA's."""

    ca: Path
    broker: Path
    """The broker's PKCS#8 key followed by its certificate (Kafka's PEM keystore)."""
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run([require_tool("openssl"), *args], check=True, capture_output=True)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return key, cert


def _leaf(directory: Path, name: str, ca_key: Path, ca_cert: Path, ext: str) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem"))
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    extfile = directory / f"{name}.ext"
    extfile.write_text(ext)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(extfile),
    )  # fmt: skip
    return key, cert


def make_pki(directory: Path) -> Pki:
    """A CA, a broker certificate for 127.0.0.1, a client certificate, and a rogue CA's client."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca(directory, "recloop-test-ca")
    server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    client_ext = "extendedKeyUsage=clientAuth\n"
    broker_key, broker_cert = _leaf(directory, "broker", ca_key, ca, server_ext)
    client_key, client_cert = _leaf(directory, "client", ca_key, ca, client_ext)
    rogue_key, rogue_ca = _ca(directory, "rogue-ca")
    rogue_client_key, rogue_client_cert = _leaf(directory, "rogue", rogue_key, rogue_ca, client_ext)
    broker = directory / "broker-keystore.pem"
    broker.write_text(broker_key.read_text() + broker_cert.read_text())
    return Pki(ca, broker, client_cert, client_key, rogue_ca, rogue_client_cert, rogue_client_key)


def secure_kafka(pki: Pki) -> ApacheKafkaBroker:
    """Apache Kafka (not started) with listeners SASL_SSL (SCRAM-SHA-512) and MTLS (SSL with
    required client certificates), beside the plaintext one the harness probes."""
    tls = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.broker),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
    }
    properties = {
        f"listener.name.{name}.{key}": v for name in ("sasl_ssl", "mtls") for key, v in tls.items()
    }
    properties |= {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "listener.name.mtls.ssl.client.auth": "required",
    }
    return ApacheKafkaBroker(
        listeners={"SASL_SSL": "SASL_SSL", "MTLS": "SSL"},
        properties=properties,
        scram_users={USER: PASSWORD},
    )
