# SPDX-License-Identifier: Apache-2.0
"""A real Mosquitto broker for tests and benchmarks: free loopback port, persistence, TLS, passwords.

    with Mosquitto(tmp_path) as broker:            # starts on a free 127.0.0.1 port
        url = broker.url                           # "mqtt://127.0.0.1:<port>"
        broker.restart()                           # SIGTERM (saves its database) + start, same port

* Persistence is on (``persistence true`` in a temporary ``persistence_location``): stopping with
  SIGTERM saves sessions and queued QoS1 messages, so a restart keeps them. `kill` (SIGKILL) is a
  crash: whatever was not saved is gone.
* TLS: `make_tls_files` creates a CA, a server certificate for 127.0.0.1/localhost and a client
  certificate with the ``openssl`` command line; pass them as ``tls=``.
* Passwords: ``users={"name": "password"}`` writes a password file with ``mosquitto_passwd`` if it
  is installed, otherwise in the same format directly (``$6$`` salted SHA-512, which mosquitto 2.x
  reads).
* `require_mosquitto` fails the test under ``CI=true`` and skips it otherwise when the binary is
  missing. Everything started is stopped by ``stop``/the context manager, also on errors.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Mosquitto",
    "TlsFiles",
    "make_tls_files",
    "require_mosquitto",
    "find_mosquitto",
    "free_port",
    "write_password_file",
]


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary ($MOSQUITTO, /usr/sbin/mosquitto, or on PATH), or None."""
    for candidate in (os.environ.get("MOSQUITTO"), "/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_mosquitto() -> str:
    """The mosquitto binary; under CI=true a missing one fails the test, otherwise skips it."""
    import pytest

    path = find_mosquitto()
    if path is None:
        message = "mosquitto is not installed: `apt-get install -y mosquitto` (CI does it in .ci/run)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test PKI: CA, server (SAN 127.0.0.1, localhost) and client certificates."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


def make_tls_files(folder: Path, *, ca_name: str = "twin_ext test CA") -> TlsFiles:
    """Create a CA and CA-signed server and client certificates (EC P-256, valid 2 days) in ``folder``."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed: `apt-get install -y openssl`")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={ca_name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip
    for name, usage, san in (
        ("server", "serverAuth", "IP:127.0.0.1,DNS:localhost"),
        ("client", "clientAuth", "DNS:twin-client"),
    ):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        (folder / f"{name}.ext").write_text(
            f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n"
            f"extendedKeyUsage={usage}\nsubjectAltName={san}\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
        )
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)  # fmt: skip
    return TlsFiles(
        folder / "ca.pem",
        folder / "ca.key",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )


def write_password_file(path: Path, users: dict[str, str], *, use_tool: bool = True) -> Path:
    """Write a mosquitto password file (``mosquitto_passwd -b`` if available, else ``$6$`` entries)."""
    path = Path(path)
    tool = shutil.which("mosquitto_passwd") if use_tool else None
    if tool:
        path.write_text("")
        for user, password in users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True, timeout=30)
    else:
        # mosquitto's "$6$" format: base64(salt) and base64(SHA-512(password || salt)).
        lines = []
        for user, password in users.items():
            salt = os.urandom(12)
            digest = hashlib.sha512(password.encode() + salt).digest()
            lines.append(f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}")
        path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _die_with_parent() -> None:
    """Child-process hook (Linux): the broker gets SIGTERM if the test process dies, so none is left behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Mosquitto:
    """One mosquitto process with a generated configuration in ``workdir``.

    Args:
        workdir: folder for the config, database, password file and log (e.g. pytest's tmp_path).
        port: TCP port on 127.0.0.1; default: a free one (kept across restarts).
        tls: `TlsFiles` to make the listener TLS-only; ``require_certificate`` asks clients for one.
        users: ``{user: password}``: password authentication, anonymous access off.
        persistence: keep sessions/queued messages in ``workdir/db`` across SIGTERM restarts.
        max_inflight, max_queued: mosquitto's ``max_inflight_messages`` / ``max_queued_messages``.
        extra_conf: more configuration lines.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        users: dict[str, str] | None = None,
        persistence: bool = True,
        max_inflight: int = 20,
        max_queued: int = 100_000,
        extra_conf: str = "",
    ) -> None:
        self.binary = find_mosquitto()
        if self.binary is None:
            raise RuntimeError("mosquitto is not installed: `apt-get install -y mosquitto`")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1"]
        if tls is not None:
            lines += [f"cafile {tls.ca_cert}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}",
                      f"require_certificate {'true' if require_certificate else 'false'}"]  # fmt: skip
        if users:
            lines += ["allow_anonymous false", f"password_file {write_password_file(self.workdir / 'passwd', users)}"]
        else:
            lines.append("allow_anonymous true")
        if persistence:
            db = self.workdir / "db"
            db.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {db}/", "autosave_interval 0"]
        lines += [f"max_inflight_messages {max_inflight}", f"max_queued_messages {max_queued}",
                  f"log_dest file {self.log_path}", "log_type error", "log_type warning", "log_type notice",
                  "log_type information", "connection_messages true"]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to user 'mosquitto' and cannot read our files
        if extra_conf:
            lines.append(extra_conf)
        self.conf_path = self.workdir / "mosquitto.conf"
        self.conf_path.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        """Start and wait until the port accepts connections; raises with the log if it does not."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {err}\n{self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s:\n{self.log()[-2000:]}"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its database) and wait; SIGKILL if it hangs. Idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        if process.stderr:
            process.stderr.close()

    def kill(self) -> None:
        """SIGKILL: a crash (nothing is saved). Idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr:
            process.stderr.close()

    def restart(self, *, down_s: float = 0.0) -> Mosquitto:
        """Stop (SIGTERM), stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        if down_s > 0:
            time.sleep(down_s)
        return self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
