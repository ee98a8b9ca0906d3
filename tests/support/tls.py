"""Throwaway TLS material for tests: a CA, a server certificate and a client certificate.

Made with the ``openssl`` command line (installed with Debian's ``openssl``), so
the tests need no extra Python package. Keys are P-256 (fast to make); the
certificates live two days and name ``127.0.0.1`` and ``localhost`` in their
SubjectAltName, which is what hostname checking looks at. The extensions are the
ones strict verifiers insist on (basicConstraints, keyUsage, key identifiers).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles", "make_tls_files"]

# A whole `openssl req` config, so the system's openssl.cnf plays no part.
_CA_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = lockstep test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {usage}
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files made by :func:`make_tls_files`."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed: run `apt-get install openssl`")
    done = subprocess.run([openssl, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args[:2]))} failed: {done.stderr.strip()}")


def _new_key(path: Path, cwd: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path, cwd=cwd)


def _issue_leaf(name: str, usage: str, files_dir: Path, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    key, csr, cert = files_dir / f"{name}.key", files_dir / f"{name}.csr", files_dir / f"{name}.crt"
    ext = files_dir / f"{name}.ext"
    ext.write_text(_LEAF_EXTENSIONS.format(usage=usage))
    _new_key(key, files_dir)
    _openssl(
        "req",
        "-new",
        "-key",
        key,
        "-subj",
        f"/CN=127.0.0.1/O=lockstep-test-{name}",
        "-out",
        csr,
        cwd=files_dir,
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", ext, "-out", cert,
        cwd=files_dir,
    )  # fmt: skip
    return cert, key


def make_tls_files(directory: Path) -> TlsFiles:
    """Make a CA and a server and a client certificate signed by it, under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    ca_config = directory / "ca.cnf"
    ca_config.write_text(_CA_CONFIG)
    _new_key(ca_key, directory)
    _openssl(
        "req", "-x509", "-new", "-key", ca_key, "-config", ca_config, "-days", "2", "-sha256",
        "-out", ca_cert,
        cwd=directory,
    )  # fmt: skip
    server_cert, server_key = _issue_leaf("server", "serverAuth", directory, ca_cert, ca_key)
    client_cert, client_key = _issue_leaf("client", "clientAuth", directory, ca_cert, ca_key)
    for key in (ca_key, server_key, client_key):
        key.chmod(0o600)
    return TlsFiles(directory, ca_cert, ca_key, server_cert, server_key, client_cert, client_key)
