"""The control plane's access control, TLS and lifetime against real redis-servers: the default
user is off, the run's user may send only the client's commands on the run's keys, an off-host
control plane speaks TLS only with the run's own CA and client certificate, and a Redis that
pmctl started stops by itself once pmctl dies without cleaning up."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from injector.control import ControlClient, ControlPlaneError
from injector.redis_server import ACL_USER, RedisServer, generate_password, namespace
from injector.tls import TlsFiles, is_loopback, make_bundle, write_files
from injector.trace import Fault

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = [
    ("CONFIG", "SET", "dir", "/tmp"), ("FLUSHALL",), ("KEYS", "*"), ("DEBUG", "SLEEP", "0"),
    ("SHUTDOWN", "NOSAVE"), ("EVAL", "return 1", "0"), ("MODULE", "LIST"),
]

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def _raw(server: RedisServer, address: str = "127.0.0.1", **kwargs):
    """A plain redis-py client (no retries: a refusal is the answer)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(host=address, port=server.port, socket_timeout=5, retry=Retry(NoBackoff(), 0), **kwargs)


def _host_address() -> str:
    """A non-loopback IPv4 address of this machine (the TLS tests need traffic that could
    leave the host); skips where there is none."""
    r = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True) \
        if shutil.which("ip") else None
    for line in (r.stdout.splitlines() if r and r.returncode == 0 else []):
        address = line.split()[3].split("/")[0]
        if not is_loopback(address):
            return address
    pytest.skip("this machine has no non-loopback IPv4 address")


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """A plain (loopback) server whose user may touch run-a's keys only."""
    with RedisServer(workdir=tmp_path_factory.mktemp("acl"), keys=namespace("run-a")) as server:
        yield server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A TLS-only server on this machine's non-loopback address (and loopback)."""
    address = _host_address()
    with RedisServer(bind=[address], workdir=tmp_path_factory.mktemp("tls"), keys=namespace("tls"), tls=True) as server:
        yield server


# -- access control ---------------------------------------------------------------------


def test_the_default_user_cannot_connect(run_a, clean_env):
    import redis

    for kwargs in ({}, {"password": run_a.password}):  # no AUTH, and AUTH as `default`
        r = _raw(run_a, **kwargs)
        with pytest.raises((redis.AuthenticationError, redis.ResponseError), match="(?i)auth|user"):
            r.ping()
        r.close()
    with pytest.raises(ControlPlaneError, match="rejected the password"):
        ControlClient(run_a.url, "run-a", password="not-the-password").ping()


def test_the_run_user_cannot_administer_the_server(run_a):
    import redis

    r = _raw(run_a, username=ACL_USER, password=run_a.password)
    try:
        assert r.ping()
        for command in FORBIDDEN:
            with pytest.raises(redis.ResponseError, match="no permissions|not allowed"):
                r.execute_command(*command)
        assert r.ping()  # neither SHUTDOWN nor anything else reached the server
    finally:
        r.close()
    conf = (run_a.workdir / "redis.conf").read_text()
    assert run_a.password not in conf and "requirepass" not in conf  # only the ACL's SHA-256


def test_the_run_user_reaches_only_its_runs_keys(run_a, clean_env):
    import redis

    r = _raw(run_a, username=ACL_USER, password=run_a.password)
    try:
        r.hset("pmctl:run-a:probe", "k", "v")
        for key in ("pmctl:run-b:fault", "pmctl:run-ab:fault", "other", "pmctl:run-a"):
            with pytest.raises(redis.ResponseError, match="no permissions"):
                r.hset(key, "k", "v")
            with pytest.raises(redis.ResponseError, match="no permissions"):
                r.hgetall(key)
    finally:
        r.close()
    other = ControlClient(run_a.url, "run-b", password=run_a.password)
    with pytest.raises(ControlPlaneError, match="no permissions"):
        other.publish_fault(Fault.uniform(((0, 1),), 0.02, since_iteration=1, epoch=1))
    with pytest.raises(ControlPlaneError, match="no permissions"):
        other.read_fault()


def _control_plane_traffic(client: ControlClient) -> None:
    """Everything pmctl and the stages do through the client, each call checked."""
    client.ping()
    client.clear()
    fault = Fault.uniform(((2, 3),), 0.06, since_iteration=2, epoch=1)
    client.publish_fault(fault, published_by=0)
    assert client.read_fault() == fault
    client.publish_detected(fault, iteration=3, link_excess_ms=[0.0, 0.0, 60.0])
    assert client.read_detected()["fault"] == fault
    client.heartbeat(0, 3, "iteration", 120.0)
    client.heartbeat(1, 3, "iteration", None)
    assert list(client.heartbeats()) == [0, 1]
    client.report_error(1, "peer gone")
    assert [e["message"] for e in client.errors()] == ["peer gone"]
    client.set_status(state="running")
    assert client.status() == {"state": "running"}
    assert client.clear() == 6 and client.read_fault() is None


def test_control_plane_traffic_works_within_the_acl(run_a, clean_env):
    with ControlClient(run_a.url, "run-a", password=run_a.password) as client:
        _control_plane_traffic(client)


# -- TLS --------------------------------------------------------------------------------


def test_tls_traffic_with_the_runs_ca_and_client_certificate(tls_server, clean_env):
    url = tls_server.url_for(tls_server.bind[0])
    assert url.startswith("rediss://") and not is_loopback(tls_server.bind[0])
    with ControlClient(url, "tls", password=tls_server.password, tls_dir=tls_server.tls_dir) as client:
        _control_plane_traffic(client)
    # The stages find the folder through the environment, as pmctl gives it to them.
    clean_env.setenv("PMCTL_CONTROL_TLS_DIR", str(tls_server.tls_dir))
    clean_env.setenv("PMCTL_CONTROL_PASSWORD_FILE", str(tls_server.password_file))
    ControlClient(url, "tls").ping()


def test_tls_refuses_other_cas_missing_certificates_and_plain_tcp(tls_server, clean_env, tmp_path):
    import redis

    url = tls_server.url_for(tls_server.bind[0])
    pw = tls_server.password
    # Another run's CA (and client certificate): the server is not trusted, nor are we.
    other = write_files(tmp_path / "other", make_bundle([tls_server.bind[0]]).files("client"))
    with pytest.raises(ControlPlaneError, match="cannot reach"):
        ControlClient(url, "tls", password=pw, tls_dir=other).ping()
    # The run's CA but no client certificate: the server requires one.
    ca_only = TlsFiles.in_dir(tls_server.tls_dir, "client").ca
    r = _raw(tls_server, tls_server.bind[0], username=ACL_USER, password=pw, ssl=True,
             ssl_ca_certs=str(ca_only), ssl_cert_reqs="required")
    with pytest.raises(redis.ConnectionError):
        r.ping()
    r.close()
    # No TLS folder at all: a one-line error before any connection.
    with pytest.raises(ControlPlaneError, match="uses TLS: set PMCTL_CONTROL_TLS_DIR"):
        ControlClient(url, "tls", password=pw)
    # Plain TCP to the TLS port, on the cluster address and on loopback: no answer.
    for address in (tls_server.bind[0], "127.0.0.1"):
        with pytest.raises(ControlPlaneError):
            ControlClient(f"redis://{address}:{tls_server.port}", "tls", password=pw).ping()
        with socket.create_connection((address, tls_server.port), timeout=5) as s:
            s.sendall(b"PING\r\n")
            s.settimeout(5)
            try:
                reply = s.recv(64)
            except (TimeoutError, ConnectionResetError):
                reply = b""
            assert b"PONG" not in reply


def test_tls_checks_the_name_the_client_dialled(tls_server, clean_env):
    # The server's certificate names its IP addresses, not "localhost": the same server,
    # dialled by a name it does not carry, is refused.
    pw, tls_dir = tls_server.password, tls_server.tls_dir
    ControlClient(f"rediss://127.0.0.1:{tls_server.port}", "tls", password=pw, tls_dir=tls_dir).ping()
    with pytest.raises(ControlPlaneError, match="cannot reach"):
        ControlClient(f"rediss://localhost:{tls_server.port}", "tls", password=pw, tls_dir=tls_dir).ping()


def test_tls_files_are_private_and_per_run(tls_server):
    from cryptography import x509

    files = sorted(p.name for p in tls_server.tls_dir.iterdir())
    assert files == ["ca.crt", "client.crt", "client.key", "server.crt", "server.key"]  # no CA key
    for p in tls_server.tls_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    server = x509.load_pem_x509_certificate((tls_server.tls_dir / "server.crt").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(tls_server.bind[0]) in sans.get_values_for_type(x509.IPAddress)
    ca = x509.load_pem_x509_certificate((tls_server.tls_dir / "ca.crt").read_bytes())
    assert ca.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=2)
    a, b = make_bundle(["10.0.0.1"]), make_bundle(["10.0.0.1"])
    assert len({a.ca_cert, b.ca_cert}) == 2 and len({a.client_key, b.client_key}) == 2


# -- what pmctl starts on the master ------------------------------------------------------


def _master(address: str, work: Path):
    from pmctl.inventory import Host
    from pmctl.transport.local import LocalTransport

    host = Host("m", address, 0, str(work), sys.executable)
    return host, LocalTransport(host)


def test_pmctl_starts_an_off_host_control_plane_with_tls_and_the_runs_acl(tmp_path, clean_env):
    from pmctl.controlplane import control_env, push_tls, run_tls, start_redis
    from pmctl.transport.base import ProcessHandle

    address = _host_address()
    clean_env.setenv("PMCTL_STATE_DIR", str(tmp_path / "state"))
    host, t = _master(address, tmp_path)
    run_dir, pw = str(tmp_path / "run"), generate_password()
    t.write_text(f"{run_dir}/password", pw + "\n")
    tls = run_tls(host, "r1")
    assert tls is not None and run_tls(_master("127.0.0.1", tmp_path)[0]) is None
    push_tls(t, run_dir, tls, master=True)
    handles: list[ProcessHandle] = []
    try:
        plane = start_redis(t, host, run_dir, _free_port(address), pw, "0123456789abcdef", "r1",
                            lambda h, url: handles.append(h), tls=tls)
        assert plane.url.startswith(f"rediss://{address}:") and plane.client is not None
        _control_plane_traffic(plane.client)
        tls_dir = control_env(run_dir, tls)["PMCTL_CONTROL_TLS_DIR"]
        with pytest.raises(ControlPlaneError, match="no permissions"):  # another run's keys
            ControlClient(plane.url, "r2", password=pw, tls_dir=tls_dir).read_fault()
        with pytest.raises(ControlPlaneError):  # plain TCP
            ControlClient(plane.url.replace("rediss", "redis"), "r1", password=pw).ping()
        assert pw.encode() not in b"".join(_cmdlines())
        plane.close()
        assert not (tmp_path / "state" / "secrets" / "r1.tls").exists()
    finally:
        for h in handles:
            t.stop(h, 2.0)


@pytest.mark.slow
def test_redis_stops_by_itself_once_pmctl_dies(tmp_path, clean_env):
    """A pmctl that renews the lease keeps Redis up; SIGKILLed, it leaves Redis running only
    until the lease runs out."""
    lease_s = 3
    # pmctl's own start_redis in a process of its own, which the test then kills outright.
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pmctl.controlplane import start_redis
        from pmctl.inventory import Host
        from pmctl.transport.local import LocalTransport
        host = Host("m", "127.0.0.1", 0, {str(tmp_path)!r}, sys.executable)
        t = LocalTransport(host)
        run_dir = {str(tmp_path / "run")!r}
        t.write_text(run_dir + "/password", "pw0123\\n")
        start_redis(t, host, run_dir, {_free_port("127.0.0.1")}, "pw0123", "0123456789abcdef", "lease",
                    lambda h, url: print(h.pgid, flush=True), lease_s={lease_s})
        print("ready", flush=True)
        time.sleep(600)
    """)
    pmctl = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, start_new_session=True)
    pgid = None
    try:
        pgid = int(pmctl.stdout.readline())
        assert pmctl.stdout.readline().strip() == "ready"
        (redis_pid,) = [p for p in _group(pgid) if _comm(p) == "redis-server"]
        time.sleep(3 * lease_s)  # several leases long: the renewals keep it up
        assert _running(redis_pid), "redis stopped while pmctl was renewing its lease"
        os.killpg(pmctl.pid, signal.SIGKILL)
        pmctl.wait(10)
        deadline = time.monotonic() + lease_s + 60  # generous: a loaded machine
        while _running(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(redis_pid), "redis outlived pmctl's lease"
        assert "renewed no lease" in (tmp_path / "run" / "redis.err").read_text()
    finally:
        if pmctl.poll() is None:
            os.killpg(pmctl.pid, signal.SIGKILL)
            pmctl.wait(10)
        if pgid is not None:
            for p in _group(pgid):
                os.kill(p, signal.SIGKILL)


def test_redis_ends_with_its_watchdog_even_when_it_is_killed(tmp_path, clean_env):
    """Redis rewrites its process title over its environment, so a sweep for the run's token
    sees only its watchdog: SIGKILLing every tokened process must still take Redis along."""
    from pmctl.controlplane import start_redis

    token = "00112233445566ff"
    host, t = _master("127.0.0.1", tmp_path)
    run_dir = str(tmp_path / "run")
    t.write_text(f"{run_dir}/password", "pw0123\n")
    handles = []
    plane = start_redis(t, host, run_dir, _free_port("127.0.0.1"), "pw0123", token, "orphan",
                        lambda h, url: handles.append(h))
    pgid = handles[0].pgid
    try:
        (redis_pid,) = [p for p in _group(pgid) if _comm(p) == "redis-server"]
        needle = f"PMCTL_TOKEN={token}".encode()
        tokened = [p for p in _group(pgid) if needle in _environ(p).split(b"\0")]
        assert tokened and redis_pid not in tokened  # the sweep's blind spot
        for p in tokened:
            os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _running(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(redis_pid), "redis outlived its killed watchdog"
    finally:
        plane.close()
        for p in _group(pgid):
            os.kill(p, signal.SIGKILL)


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _stat_fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _group(pgid: int) -> list[int]:
    """The live (non-zombie) processes of a process group."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            f = _stat_fields(int(p.name))
            if f and f[0] != "Z" and int(f[2]) == pgid:
                out.append(int(p.name))
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    f = _stat_fields(pid)
    return bool(f) and f[0] != "Z"


def _cmdlines() -> list[bytes]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                out.append((p / "cmdline").read_bytes())
            except OSError:
                continue
    return out
