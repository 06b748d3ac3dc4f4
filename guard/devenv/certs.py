"""Throwaway certificates for local TLS (tests, trying TLS out): a CA, a server certificate for
loopback and a client certificate, made with the ``openssl`` command line tool.

Never for production: the keys are unencrypted files and the CA signs whatever this module asks.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from guard.errors import ConfigError


@dataclass(frozen=True)
class DevCerts:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_dev_certs(folder: Path, host: str = "127.0.0.1", days: int = 2) -> DevCerts:
    """A CA and, signed by it, a server certificate for ``host`` (an IP) and a client certificate."""
    if shutil.which("openssl") is None:
        raise ConfigError("openssl not found: it makes the dev certificates")
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", str(days), "-subj", "/CN=guard dev CA", cwd=folder)
    for name, ext in (("server", f"subjectAltName=IP:{host}\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (folder / f"{name}.ext").write_text(ext, encoding="ascii")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=guard dev {name}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days), "-extfile", f"{name}.ext",
                 cwd=folder)
    return DevCerts(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                    folder / "client.pem", folder / "client.key")
