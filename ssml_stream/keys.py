"""CURVE keys for the publisher and its viewers: `ssml-keys DIR` writes them, the loaders check them.

Layout of a key folder (ZeroMQ certificate files, readable by `zmq.auth.load_certificate`):

    DIR/server.key          publisher public key (viewers need it)
    DIR/server.key_secret   publisher secret key (mode 600, stays on the publisher's machine)
    DIR/clients/*.key       public keys of the viewers the publisher accepts
    DIR/client.key          a viewer's public key
    DIR/client.key_secret   a viewer's secret key (mode 600)

`ssml-keys DIR` creates all of it, with the one client already authorised, so `--curve-keys DIR` works for
both programs on one machine. `ssml-keys DIR --client NAME` adds a viewer: it writes the folder DIR/NAME
(server.key, client.key, client.key_secret) to copy to that viewer's machine and authorises its key.
Key files are never overwritten; secret ones are created with mode 600, and one that other users can
access is refused (as is a clients folder they can write to).
"""
from __future__ import annotations

import argparse
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from .cli_common import OneLineParser, cli_entry
from .errors import SsmlError

SERVER, CLIENT, CLIENTS_DIR = "server", "client", "clients"
PUBLIC_SUFFIX, SECRET_SUFFIX = ".key", ".key_secret"
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class CurveKeyError(SsmlError):
    """CURVE keys are missing, malformed, or not private enough to use."""


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes = field(repr=False)
    clients_dir: str     # folder of authorised client public keys (*.key)


@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes = field(repr=False)
    server_public: bytes


# ---------------------------------------------------------------- loading

def load_server_keys(folder: str | os.PathLike) -> ServerKeys:
    folder = Path(folder)
    public, secret = _load_keypair(folder / (SERVER + SECRET_SUFFIX))
    clients = folder / CLIENTS_DIR
    if not clients.is_dir():
        raise CurveKeyError(f"no folder of authorised client keys at {clients}")
    if clients.stat().st_mode & 0o022:
        raise CurveKeyError(f"{clients} is writable by other users, who could authorise themselves; "
                            f"chmod 700 {clients}")
    authorised = sorted(clients.glob("*" + PUBLIC_SUFFIX))
    if not authorised:
        raise CurveKeyError(f"no client keys (*{PUBLIC_SUFFIX}) in {clients}: no viewer could connect")
    for path in authorised:
        _load_public(path)   # a malformed file would otherwise be skipped silently by the authenticator
    return ServerKeys(public=public, secret=secret, clients_dir=str(clients))


def load_client_keys(folder: str | os.PathLike) -> ClientKeys:
    folder = Path(folder)
    public, secret = _load_keypair(folder / (CLIENT + SECRET_SUFFIX))
    return ClientKeys(public=public, secret=secret, server_public=_load_public(folder / (SERVER + PUBLIC_SUFFIX)))


def _load_public(path: Path) -> bytes:
    return _read_certificate(path)[0]


def _load_keypair(path: Path) -> tuple[bytes, bytes]:
    if path.exists():
        mode = path.stat().st_mode
        if mode & 0o077:
            raise CurveKeyError(f"secret key {path} is accessible by other users (mode {stat.filemode(mode)}); "
                                f"chmod 600 {path}")
    public, secret = _read_certificate(path)
    if secret is None:
        raise CurveKeyError(f"{path} holds no secret key")
    if zmq.curve_public(secret) != public:
        raise CurveKeyError(f"public and secret key in {path} do not belong together")
    return public, secret


def _read_certificate(path: Path) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise CurveKeyError(f"no key file {path} (create keys with ssml-keys)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise CurveKeyError(f"cannot read key file {path} ({e})") from None
    for key in (public, secret):
        if key is not None and not _is_z85_key(key):
            raise CurveKeyError(f"{path} does not hold a valid CURVE key (40 Z85 characters)")
    return public, secret


def _is_z85_key(key: bytes) -> bool:
    try:
        return len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError):
        return False


# ---------------------------------------------------------------- writing

def make_keys(folder: str | os.PathLike) -> list[Path]:
    """New server keypair and one authorised client keypair in `folder`. Refuses to replace keys."""
    folder = Path(folder)
    if (folder / (SERVER + SECRET_SUFFIX)).exists():
        raise CurveKeyError(f"{folder} already holds server keys; not replacing them")
    _make_private_dir(folder)
    _make_private_dir(folder / CLIENTS_DIR)
    authorised = folder / CLIENTS_DIR / (CLIENT + PUBLIC_SUFFIX)
    _write_keypair(folder, SERVER)
    _write_key_file(authorised, _write_keypair(folder, CLIENT))
    return [folder / (name + suffix) for name in (SERVER, CLIENT) for suffix in (PUBLIC_SUFFIX, SECRET_SUFFIX)] \
        + [authorised]


def add_client(folder: str | os.PathLike, name: str) -> Path:
    """Keys for one more viewer: folder/name/ (to copy to the viewer) and its authorisation."""
    folder = Path(folder)
    if not CLIENT_NAME.fullmatch(name) or name == CLIENTS_DIR:
        raise CurveKeyError(f"client name must be letters, digits, '_', '-' or '.' (not {CLIENTS_DIR!r}), got {name!r}")
    server = load_server_keys(folder)
    authorised = folder / CLIENTS_DIR / (name + PUBLIC_SUFFIX)
    target = folder / name
    if authorised.exists() or target.exists():
        raise CurveKeyError(f"client {name!r} already exists in {folder}")
    _make_private_dir(target)
    _write_key_file(target / (SERVER + PUBLIC_SUFFIX), server.public)
    _write_key_file(authorised, _write_keypair(target, CLIENT))
    return target


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_keypair(folder: Path, name: str) -> bytes:
    """name.key and name.key_secret in folder; returns the public key."""
    public, secret = zmq.curve_keypair()
    _write_key_file(folder / (name + PUBLIC_SUFFIX), public)
    _write_key_file(folder / (name + SECRET_SUFFIX), public, secret)
    return public


def _write_key_file(path: Path, public: bytes, secret: bytes | None = None) -> Path:
    """Same text format as zmq.auth.create_certificates, but created exclusively and, for a secret, with
    mode 600 from the start (create_certificates overwrites and leaves the mode to the umask)."""
    kind = "secret" if secret else "public"
    text = f"#   ZeroMQ CURVE {kind} certificate written by ssml-keys\n\nmetadata\ncurve\n" \
           f"    public-key = \"{public.decode()}\"\n"
    if secret:
        text += f"    secret-key = \"{secret.decode()}\"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    except FileExistsError:
        raise CurveKeyError(f"{path} already exists; not replacing a key") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------- command line

EXAMPLES = """examples:
  ssml-keys keys/                  # server keys + one authorised viewer key, for one machine:
  ssml-stream --curve-keys keys/ --publish tcp://0.0.0.0:5555
  ssml-view --curve-keys keys/ --connect tcp://127.0.0.1:5555
  ssml-keys keys/ --client lab-pc  # another viewer: copy keys/lab-pc/ to it, then there:
  ssml-view --curve-keys lab-pc/ --connect tcp://PUBLISHER:5555
to revoke a viewer, delete keys/clients/NAME.key and restart ssml-stream"""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="ssml-keys", description="Create ZeroMQ CURVE keys (encryption and viewer "
                      "authentication) for ssml-stream --curve-keys and ssml-view --curve-keys.",
                      epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="DIR", help="key folder (created, mode 700)")
    p.add_argument("--client", metavar="NAME", help="add a viewer to an existing key folder: writes DIR/NAME/")
    return p


@cli_entry("ssml-keys")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.client:
        target = add_client(args.folder, args.client)
        print(f"ssml-keys: viewer {args.client!r} authorised; copy {target} to it and run "
              f"ssml-view --curve-keys {target.name} --connect tcp://PUBLISHER:PORT")
    else:
        written = make_keys(args.folder)
        print(f"ssml-keys: wrote {len(written)} key files to {args.folder}; "
              f"use --curve-keys {args.folder} with ssml-stream and ssml-view")
    return 0


if __name__ == "__main__":
    main()
