"""A one-node Slurm on this machine for the tests, started from nothing and stopped afterwards.

    <tmp>/slurm.conf        one node (this machine's cores), proctrack/linuxproc, task/none,
                            select/cons_tres, no cgroups, no accounting, MaxArraySize=MAX_ARRAY_SIZE
    <tmp>/munge/            munged's key (fresh, random), socket, pid file and log
    <tmp>/state/ spool/     slurmctld's saved state, slurmd's spool
    <tmp>/log/              slurmctld.log, slurmd.log

munged, slurmctld and slurmd listen on free ports of this machine and talk over 127.0.0.1 only. Clients
(sbatch, squeue, scancel, scontrol, and ``dimattn study run --backend slurm --submit``) find the cluster
through ``$SLURM_CONF``, which :func:`slurm` sets for the tests that use it.

The daemons run as root (slurmd runs jobs as their users): the tests start them directly when they run as
root, else through ``sudo -n`` (passwordless sudo, as CI machines have). They need Debian's ``slurm-wlm`` and
``munge`` (``apt-get install -y slurm-wlm munge``; ``.ci/run`` installs them). Without them the Slurm tests
skip saying why; under CI (``CI`` set, as ``.ci/run`` does) they fail instead: CI installs them and must run
the tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

NODE = "dimattn-node"
MAX_ARRAY_SIZE = 3  # array indices 0-2: a study of 4 runs needs two arrays
KILL_WAIT = 10  # seconds between a job's SIGTERM and its SIGKILL (Slurm's default is 30)
DAEMONS = ("munged", "slurmctld", "slurmd")
AS_ROOT = [] if os.geteuid() == 0 else ["sudo", "-n"]  # how the daemons are started and stopped


def missing() -> str | None:
    """Why a Slurm cannot be started here, or None."""
    if AS_ROOT and (shutil.which("sudo") is None
                    or subprocess.run([*AS_ROOT, "true"], capture_output=True).returncode != 0):
        return "the Slurm tests start slurmd, which needs root: run them as root or with passwordless sudo"
    lost = [tool for tool in (*DAEMONS, "sbatch", "squeue", "scontrol", "scancel", "sinfo")
            if shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") is None]
    if lost:
        return f"{', '.join(lost)} not found: install Debian's slurm-wlm and munge (apt-get install -y slurm-wlm munge)"
    return None


def skip_or_fail(why: str) -> None:
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{why}; CI must run the Slurm tests")
    pytest.skip(f"{why}; the Slurm tests are skipped outside CI (CI unset)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon(name: str) -> str:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or name


@dataclass
class Slurm:
    """A running one-node Slurm; ``env`` is what a client needs (``SLURM_CONF``)."""

    root: Path
    cpus: int

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> str:
        """A Slurm client command (squeue, scontrol, ...) against this cluster; its stdout."""
        done = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def jobs(self) -> list[str]:
        """Job ids (``123`` or ``123_4``) still pending or running."""
        return self.run("squeue", "-h", "-r", "-o", "%i").split()

    def wait_idle(self, timeout: float = 240) -> None:
        """Until no job is pending or running (raises after ``timeout`` seconds, naming what is left)."""
        deadline = time.monotonic() + timeout
        while self.jobs():
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still queued after {timeout:.0f} s:\n"
                                     + self.run("squeue", "-r", "-o", "%i %T %r %j"))
            time.sleep(0.5)

    def state(self, job: str) -> str:
        """A job's (or array task's) state: PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELLED ..."""
        out = self.run("scontrol", "-o", "show", "job", job)
        return next(w.split("=", 1)[1] for w in out.split() if w.startswith("JobState="))

    def log_tail(self) -> str:
        return "\n".join((self.root / "log" / f"{d}.log").read_text(errors="replace")[-2000:]
                         for d in ("slurmctld", "slurmd") if (self.root / "log" / f"{d}.log").is_file())


def write_conf(root: Path, cpus: int) -> None:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    lines = {
        "ClusterName": "dimattntest", "SlurmctldHost": "localhost(127.0.0.1)",
        "SlurmctldPort": _free_port(), "SlurmdPort": _free_port(), "SlurmUser": "root", "SlurmdUser": "root",
        "AuthType": "auth/munge", "CredType": "cred/munge", "AuthInfo": f"socket={root}/munge/munge.sock",
        "StateSaveLocation": root / "state", "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid", "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "log/slurmctld.log", "SlurmdLogFile": root / "log/slurmd.log",
        "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none", "AccountingStorageType": "accounting_storage/none",
        "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
        # schedule at once on submit and when a job ends (dependencies), not once a minute
        "SchedulerType": "sched/builtin", "SchedulerParameters": "sched_interval=1",
        "MaxArraySize": MAX_ARRAY_SIZE, "KillWait": KILL_WAIT, "MinJobAge": 3600, "ReturnToService": 2,
        "SlurmdParameters": "config_overrides",
    }
    text = "".join(f"{k}={v}\n" for k, v in lines.items()) + (
        f"NodeName={NODE} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN\n"
        f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP\n")
    (root / "slurm.conf").write_text(text)


def start(root: Path) -> Slurm:
    """munged, slurmctld and slurmd from a fresh slurm.conf in ``root``; returns once the node is idle."""
    cpus = os.cpu_count() or 1
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # munged wants its socket's folders searchable by all
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    write_conf(root, cpus)
    cluster = Slurm(root, cpus)
    m = root / "munge"
    # --force: pytest's temporary folders are not the system folders munged checks for safe permissions
    subprocess.run([*AS_ROOT, _daemon("munged"), "--force", f"--key-file={key}", f"--socket={m}/munge.sock",
                    f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
                   check=True, timeout=30)
    subprocess.run([*AS_ROOT, _daemon("slurmctld"), "-f", str(cluster.conf)], check=True, timeout=30)
    subprocess.run([*AS_ROOT, _daemon("slurmd"), "-f", str(cluster.conf), "-N", NODE], check=True, timeout=30)
    deadline = time.monotonic() + 60
    while cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip() != "idle":
        if time.monotonic() > deadline:
            stop(cluster)
            raise AssertionError(f"the Slurm node did not become idle in 60 s:\n{cluster.log_tail()}")
        time.sleep(0.3)
    return cluster


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop(cluster: Slurm) -> None:
    """Cancel what is left, stop slurmd and slurmctld, then munged: each by its own pid file."""
    cluster.run("scancel", "--user", "root", check=False)
    pids = [_pid(cluster.root / f) for f in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid")]
    for pid in pids:
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            _wait_gone(pid)


def _signal(pid: int, sig: int) -> None:
    if AS_ROOT:
        subprocess.run([*AS_ROOT, "kill", f"-{sig}", str(pid)], capture_output=True)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:  # root's, and alive
            pass
        time.sleep(0.1)
    _signal(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Iterator[Slurm]:
    """One Slurm for the whole session (started on first use, stopped at the end)."""
    why = missing()
    if why:
        skip_or_fail(why)
    cluster = start(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        stop(cluster)
