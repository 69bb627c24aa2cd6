"""A throwaway OpenSSH server on 127.0.0.1 for the ssh target's tests.

`start_sshd(directory)` makes a host key and a client key with ssh-keygen, writes
authorized_keys and a known_hosts file for the client, starts `/usr/sbin/sshd -D`
on a free port with nothing but command-line options, and waits until it
answers with its banner. `Sshd.stop()` ends it by its pid.

Run as a script, this file is also an SFTP subsystem for sshd that can hold an
upload forever (`hold-sftp MARKER`): it relays the SFTP protocol to OpenSSH's
sftp-server and, while the file MARKER exists, stops relaying right after the
client opens a file whose path contains MARKER's text and ends in `.tmp`. The
temporary file then exists on the host, empty, and the client waits for ever on
its first write: an upload cut in the middle, every time. It exits when the
client goes away.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SSH_FXP_OPEN = 3


def missing_programs() -> list[str]:
    return [program for program in (SSHD, SFTP_SERVER) if not os.access(program, os.X_OK)] + (
        [] if shutil.which(SSH_KEYGEN) else [SSH_KEYGEN]
    )


def keygen(path: Path) -> str:
    """A new ed25519 key pair at `path` (and path.pub); returns the public key line's `type base64`."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True,
                   capture_output=True)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


@dataclass
class Sshd:
    directory: Path
    port: int
    host_public_key: str  # "ssh-ed25519 AAAA..."
    client_key: Path
    known_hosts: Path  # holds the host key for [127.0.0.1]:port
    log: Path
    process: subprocess.Popen[bytes]

    def known_hosts_line(self, public_key: str | None = None, host: str = "127.0.0.1") -> str:
        return f"[{host}]:{self.port} {public_key or self.host_public_key}\n"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def start_sshd(directory: Path, subsystem: str = "internal-sftp", force_command: str | None = None) -> Sshd:
    """An sshd for the current user on 127.0.0.1, public key authentication only; with `force_command`,
    every session runs that instead, the client's command in $SSH_ORIGINAL_COMMAND."""
    from tests.ports import start_listening  # here: the file also runs as a script, without tests/ importable

    directory.mkdir(parents=True, exist_ok=True)
    host_public = keygen(directory / "host_key")
    client_public = keygen(directory / "client_key")
    authorized = directory / "authorized_keys"
    authorized.write_text(client_public + "\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory, as root

    def argv(port: int) -> list[str]:
        options = {
            "HostKey": str(directory / "host_key"),
            "Port": str(port),
            "ListenAddress": "127.0.0.1",
            "AuthorizedKeysFile": str(authorized),
            "StrictModes": "no",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "PermitRootLogin": "prohibit-password",
            "PidFile": str(directory / "sshd.pid"),
            "UsePAM": "no",
            "Subsystem": f"sftp {subsystem}",
            "MaxSessions": "100",
            "MaxStartups": "100",
            **({"ForceCommand": force_command} if force_command else {}),
        }
        argv = [SSHD, "-D", "-e", "-f", "/dev/null"]
        for name, value in options.items():
            argv += ["-o", f"{name}={value}"]
        return argv

    # sshd cannot report a port it chose: one that is free now, then another if it was taken meanwhile.
    log = directory / "sshd.log"
    process, port = start_listening(argv, _answers, "sshd", log=log, stdin=subprocess.DEVNULL)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public}\n")
    return Sshd(directory, port, host_public, directory / "client_key", known_hosts, log, process)


# --- the holding SFTP subsystem -------------------------------------------------------------------


def _read_exactly(stream: object, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))  # type: ignore[attr-defined]
        if not chunk:
            return data
        data += chunk
    return data


def hold_sftp(marker: Path) -> int:
    server = subprocess.Popen([SFTP_SERVER], stdin=subprocess.PIPE)  # its output goes straight to the client
    assert server.stdin is not None
    incoming = sys.stdin.buffer
    holding = False
    while True:
        header = _read_exactly(incoming, 4)
        if len(header) < 4:
            break
        (length,) = struct.unpack(">I", header)
        packet = _read_exactly(incoming, length)
        if len(packet) < length:
            break
        if holding:
            continue  # swallowed: the client waits for an answer that never comes
        server.stdin.write(header + packet)
        server.stdin.flush()
        if packet[:1] == bytes([SSH_FXP_OPEN]) and marker.exists():
            (name_length,) = struct.unpack(">I", packet[5:9])
            path = packet[9 : 9 + name_length].decode("utf-8", errors="replace")
            text = marker.read_text().strip()
            holding = bool(text) and text in path and path.endswith(".tmp")
    server.stdin.close()
    server.terminate()
    server.wait()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["hold-sftp"] and len(sys.argv) == 3:
        sys.exit(hold_sftp(Path(sys.argv[2])))
    sys.exit(f"usage: {sys.argv[0]} hold-sftp MARKER")
