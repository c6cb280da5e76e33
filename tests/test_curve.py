"""ZeroMQ CURVE: key files (`ssml-keys`), the checks made when loading them, and who receives frames
from an encrypted publisher (authorised viewers do; plain, unknown-key and wrong-server viewers never)."""
import os
import stat
import threading
import time

import numpy as np
import pytest
import zmq

from ssml_stream import keys as keyfiles
from ssml_stream.keys import ClientKeys, CurveKeyError, add_client, load_client_keys, load_server_keys, make_keys
from ssml_stream.publish import Publisher
from ssml_stream.viewer import Subscriber

OBSERVE_S = 3.0      # strangers are watched this long while authorised viewers keep receiving
DEADLINE_S = 30.0


@pytest.fixture
def key_dir(tmp_path):
    folder = tmp_path / "keys"
    make_keys(folder)
    return folder


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_make_keys_writes_private_secrets_and_authorises_its_client(key_dir):
    assert sorted(p.relative_to(key_dir).as_posix() for p in key_dir.rglob("*") if p.is_file()) == [
        "client.key", "client.key_secret", "clients/client.key", "server.key", "server.key_secret"]
    assert mode(key_dir) == 0o700 and mode(key_dir / "clients") == 0o700
    assert mode(key_dir / "server.key_secret") == 0o600 and mode(key_dir / "client.key_secret") == 0o600
    server, client = load_server_keys(key_dir), load_client_keys(key_dir)
    assert client.server_public == server.public and server.public != client.public
    assert server.secret.decode() not in repr(server) and client.secret.decode() not in repr(client)
    assert zmq.auth.load_certificate(key_dir / "clients" / "client.key")[0] == client.public
    with pytest.raises(CurveKeyError, match="already holds server keys"):
        make_keys(key_dir)
    assert load_server_keys(key_dir) == server          # nothing was replaced


def test_add_client_writes_a_folder_for_the_viewer(key_dir):
    lab = add_client(key_dir, "lab-pc")
    assert lab == key_dir / "lab-pc" and mode(lab) == 0o700 and mode(lab / "client.key_secret") == 0o600
    assert not (lab / "server.key_secret").exists()     # the viewer never gets the server's secret
    client = load_client_keys(lab)
    assert client.server_public == load_server_keys(key_dir).public
    assert zmq.auth.load_certificate(key_dir / "clients" / "lab-pc.key")[0] == client.public
    for name, message in [("lab-pc", "already exists"), ("../up", "client name"), ("clients", "client name")]:
        with pytest.raises(CurveKeyError, match=message):
            add_client(key_dir, name)


@pytest.mark.parametrize("secret, loader", [("server.key_secret", load_server_keys),
                                            ("client.key_secret", load_client_keys)])
@pytest.mark.parametrize("bits", [0o004, 0o040, 0o002])
def test_secret_accessible_by_others_is_refused(key_dir, secret, loader, bits):
    path = key_dir / secret
    path.chmod(0o600 | bits)
    with pytest.raises(CurveKeyError, match="accessible by other users") as err:
        loader(key_dir)
    assert f"chmod 600 {path}" in str(err.value) and "\n" not in str(err.value)


def _swap_public_key(folder):
    path = folder / "server.key_secret"
    other = zmq.curve_keypair()[0].decode()
    text = path.read_text()
    start = text.index('public-key = "') + len('public-key = "')
    path.write_text(text[:start] + other + text[start + 40:])


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "server.key_secret").unlink(), "no key file"),
    (lambda d: [p.unlink() for p in (d / "clients").iterdir()], "no client keys"),
    (lambda d: (d / "clients").chmod(0o777), "writable by other users"),
    (lambda d: (d / "clients" / "bad.key").write_text('curve\n    public-key = "short"\n'), "valid CURVE key"),
    (lambda d: (d / "clients" / "empty.key").write_text("nothing here\n"), "cannot read key file"),
    (_swap_public_key, "do not belong together"),
])
def test_broken_server_key_folder_is_a_one_line_error(key_dir, damage, message):
    damage(key_dir)
    with pytest.raises(CurveKeyError, match=message) as err:
        Publisher(["tcp://127.0.0.1:*"], curve_keys=key_dir)
    assert "\n" not in str(err.value)


def test_keys_command(tmp_path, capsys):
    folder = tmp_path / "k"
    assert keyfiles.main([str(folder)]) == 0
    assert "wrote 5 key files" in capsys.readouterr().out
    assert keyfiles.main([str(folder), "--client", "lab"]) == 0
    assert (folder / "clients" / "lab.key").exists()
    capsys.readouterr()
    for argv, message in [([str(folder)], "already holds server keys"),
                          ([str(folder), "--client", "a/b"], "client name"),
                          ([str(tmp_path / "none"), "--client", "x"], "no key file")]:
        assert keyfiles.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ssml-keys: error:") and message in err[0], err


def publish_while(pub, done, deadline_s=DEADLINE_S):
    """Send frames every ~10 ms until done() or the deadline (then fail)."""
    rate = np.full((16, 24), 0.3, np.float32)
    t_end = time.monotonic() + deadline_s
    seq = 0
    while not done():
        assert time.monotonic() < t_end, "authorised viewers never received frames"
        pub.send_frame(rate, seq=seq, center=seq, first=seq, last=seq, capture_ns=time.time_ns(), model="t")
        seq += 1
        time.sleep(0.01)


def test_only_authorised_viewers_receive_frames(key_dir):
    lab = add_client(key_dir, "lab")
    server_public = load_server_keys(key_dir).public
    stranger_public, stranger_secret = zmq.curve_keypair()
    authorised = load_client_keys(key_dir)
    with Publisher(["tcp://127.0.0.1:*"], curve_keys=key_dir) as pub:
        assert pub.encrypted
        endpoint = pub.endpoints[0]
        subs = {
            "local": Subscriber([endpoint], curve=authorised),
            "lab": Subscriber([endpoint], curve=load_client_keys(lab)),
            "plain": Subscriber([endpoint]),
            "unknown key": Subscriber([endpoint], curve=ClientKeys(stranger_public, stranger_secret, server_public)),
            # an authorised viewer that does not trust this server (e.g. a man in the middle) refuses it
            "wrong server": Subscriber([endpoint], curve=ClientKeys(authorised.public, authorised.secret,
                                                                    zmq.curve_keypair()[0])),
        }
        try:
            first_frames_s = []

            def done():
                for sub in subs.values():
                    sub.drain()
                if not first_frames_s and subs["local"].frames and subs["lab"].frames:
                    first_frames_s.append(time.monotonic())
                return bool(first_frames_s) and time.monotonic() - first_frames_s[0] > OBSERVE_S

            publish_while(pub, done)
            received = {name: sub.received for name, sub in subs.items()}
        finally:
            for sub in subs.values():
                sub.close()
    assert received["local"] >= 10 and received["lab"] >= 10, received
    assert received["plain"] == received["unknown key"] == received["wrong server"] == 0, received


def test_viewer_and_stream_commands_with_curve_keys(key_dir, reds_test, tmp_path, capsys):
    """ssml-stream --curve-keys publishes what ssml-view --curve-keys shows."""
    from ssml_stream.stream_cli import main as stream_main
    from ssml_stream.viewer import main as view_main
    dat, _ = reds_test
    endpoint = f"ipc://{tmp_path}/s.ipc"
    results = {}

    def run(name, fn, argv):
        try:
            results[name] = fn(argv)
        except BaseException as e:   # re-raised below: a failure in a thread must fail the test
            results[name] = e

    stream = threading.Thread(target=run, args=("stream", stream_main, [
        "--device", f"file:{dat}", "--loop", "--model", "tfp", "--duration", "6", "--quiet",
        "--publish", endpoint, "--curve-keys", str(key_dir)]))
    viewer = threading.Thread(target=run, args=("view", view_main, [
        "--connect", endpoint, "--curve-keys", str(key_dir), "--headless", "--max-frames", "5", "--duration", "25"]))
    stream.start()
    viewer.start()
    viewer.join(DEADLINE_S)
    stream.join(DEADLINE_S)
    assert not viewer.is_alive() and not stream.is_alive(), "ssml-view or ssml-stream did not finish"
    for value in results.values():
        if isinstance(value, BaseException):
            raise value
    out = capsys.readouterr().out
    assert results == {"stream": 0, "view": 0}, (results, out)
    assert f"publishing on {endpoint} (CURVE)" in out and "shown 5 frames" in out, out


def test_viewer_refuses_a_readable_secret(key_dir, capsys):
    from ssml_stream.viewer import main as view_main
    (key_dir / "client.key_secret").chmod(0o644)
    rc = view_main(["--connect", "tcp://127.0.0.1:5555", "--curve-keys", str(key_dir), "--headless", "--duration", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "chmod 600" in err[0], err
