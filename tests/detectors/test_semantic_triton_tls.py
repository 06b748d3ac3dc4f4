"""The Triton detector over TLS, against a real ``tritonserver --grpc-use-ssl-mutual``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guard import assemble
from guard.detectors.semantic import TritonDetector, TritonTls
from guard.devenv.certs import DevCerts, make_dev_certs
from guard.devenv.triton import TritonServer
from guard.errors import ConfigError, DetectorUnavailable
from guard.settings import Settings

from .test_semantic_local import TEXTS, windows_of

pytestmark = pytest.mark.triton


async def test_scores_over_mutual_tls_match_plaintext(tls_triton: TritonServer, triton_server: TritonServer,
                                                      certs: DevCerts) -> None:
    ws = windows_of(TEXTS)
    async with TritonDetector.connect(triton_server.grpc_url) as plain:
        expected = await plain.score(ws)
    async with TritonDetector.connect(tls_triton.grpc_url, tls=TritonTls(certs.ca_file, certs.client_cert,
                                                                         certs.client_key)) as det:
        got = await det.score(ws)
    np.testing.assert_allclose(got, expected, atol=1e-5)


async def test_a_client_without_tls_or_its_certificate_is_refused(tls_triton: TritonServer,
                                                                  certs: DevCerts) -> None:
    with pytest.raises(DetectorUnavailable):
        async with TritonDetector.connect(tls_triton.grpc_url, timeout_s=5.0):
            pass
    with pytest.raises(DetectorUnavailable):  # mutual TLS: the CA alone is not enough
        async with TritonDetector.connect(tls_triton.grpc_url, timeout_s=5.0, tls=TritonTls(certs.ca_file)):
            pass
    other = make_dev_certs(certs.ca_file.parent / "other")  # a certificate from another CA
    with pytest.raises(DetectorUnavailable):
        async with TritonDetector.connect(tls_triton.grpc_url, timeout_s=5.0,
                                          tls=TritonTls(other.ca_file, other.client_cert, other.client_key)):
            pass


def test_settings_turn_tls_on_and_files_are_checked_up_front(tmp_path: Path, certs: DevCerts) -> None:
    assert assemble.triton_tls(Settings()) is None
    assert assemble.triton_tls(Settings(triton_tls=True)) == TritonTls()
    tls = assemble.triton_tls(Settings(triton_tls_ca_file=certs.ca_file))
    assert tls == TritonTls(certs.ca_file) and tls.client_args()["root_certificates"] == str(certs.ca_file)
    with pytest.raises(ConfigError, match="needs its key"):
        TritonTls(certs.ca_file, cert_file=certs.client_cert).client_args()
    with pytest.raises(ConfigError, match="is not a file"):
        TritonTls(tmp_path / "missing.pem").client_args()
