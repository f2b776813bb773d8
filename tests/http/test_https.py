"""HTTPS: ``[http] listen = ssl:...`` with a certificate, reached by curl verifying it."""

import subprocess

import pytest_twisted
from twisted.internet import utils


@pytest_twisted.ensureDeferred
async def test_api_over_https_with_a_certificate(start_api, tmp_path):
    """The README's recipe: a self-signed certificate made by openssl, an ssl: endpoint,
    and curl trusting that certificate only; plain HTTP on that port gets no answer."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    api = await start_api(listen=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    url = (f"https://localhost:{api.port}/mvapireq/?apientry=balance&authid=alice"
           f"&authpwd=wonder")
    resolve = f"localhost:{api.port}:127.0.0.1"
    out, err, code = await utils.getProcessOutputAndValue(
        "curl", ["-sS", "--max-time", "10", "--resolve", resolve, "--cacert", str(cert), url])
    assert (code, out) == (0, b"OK: 5.00\n"), err
    out, err, code = await utils.getProcessOutputAndValue(
        "curl", ["-sS", "--max-time", "10", "--resolve", resolve, url])
    assert code == 60, err  # curl: the certificate is not trusted without --cacert
    out, err, code = await utils.getProcessOutputAndValue(
        "curl", ["-sS", "--max-time", "10", url.replace("https:", "http:", 1).replace(
            "localhost", "127.0.0.1")])
    assert code != 0 and not out.startswith(b"OK")
