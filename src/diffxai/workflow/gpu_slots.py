"""One GPU per concurrent job on a multi-GPU workstation: device slots held by file locks.

Snakemake counts the ``gpu`` resource (``--resources gpu=N``) but does not say *which* device a
job should use, so two jobs started together would both land on ``cuda:0``. Every diffxai job
whose rule asks for ``gpu > 0`` calls :func:`acquire_gpus` before torch touches CUDA: it takes an
exclusive ``fcntl.flock`` on one lock file per device in a slots directory shared by all jobs on
the machine, and sets ``CUDA_VISIBLE_DEVICES`` to the devices it holds, so the job's ``cuda:0``
is its own device. The kernel drops the locks when the process exits, also when it crashes or is
killed, so a slot can never leak.

Devices to hand out, in order of precedence:

* under a scheduler that already binds devices (SLURM sets ``CUDA_VISIBLE_DEVICES`` from the
  job's GRES; detected by ``SLURM_JOB_ID``), or with ``DIFFXAI_GPU_SLOTS=off``: nothing is
  locked and ``CUDA_VISIBLE_DEVICES`` is used as given;
* ``CUDA_VISIBLE_DEVICES`` when set (e.g. ``0,2`` to give the workflow two of four GPUs);
* ``DIFFXAI_GPU_COUNT`` (an integer; used by the tests, which have no GPU);
* the NVIDIA driver's device list (``/proc/driver/nvidia/gpus``, else ``nvidia-smi -L``), read
  without initialising CUDA.

Locks live in ``DIFFXAI_GPU_SLOTS_DIR`` or ``<tmpdir>/diffxai-gpu-slots-<uid>``: one machine-wide
directory, so that two workflows running side by side also share the devices fairly.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from diffxai.core.errors import DiffxaiError

log = logging.getLogger("diffxai.gpu_slots")


ENV_DIR = "DIFFXAI_GPU_SLOTS_DIR"


ENV_COUNT = "DIFFXAI_GPU_COUNT"


ENV_MODE = "DIFFXAI_GPU_SLOTS"


@dataclass
class GpuLease:
    """Devices a job holds: ``devices`` are the IDs written to ``CUDA_VISIBLE_DEVICES``.

    ``source`` says where they came from: ``slots`` (locked here), ``scheduler`` (taken as
    given, e.g. from SLURM) or ``none`` (no GPU requested or none present).
    """

    devices: list[str]
    source: str
    _fds: list[int] = field(default_factory=list, repr=False)

    def release(self) -> None:
        """Drop the locks now (they are also dropped when the process exits)."""
        for fd in self._fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._fds = []


def slots_dir() -> Path:
    """The machine-wide lock directory (created on demand)."""
    d = os.environ.get(ENV_DIR) or os.path.join(tempfile.gettempdir(), f"diffxai-gpu-slots-{os.getuid()}")
    path = Path(d)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _driver_device_ids() -> list[str]:
    """Device indices the NVIDIA driver reports, without initialising CUDA (``[]`` if none)."""
    proc_dir = Path("/proc/driver/nvidia/gpus")
    if proc_dir.is_dir():
        return [str(i) for i in range(len(list(proc_dir.iterdir())))]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if re.match(r"GPU \d+:", ln))]


def device_pool() -> list[str]:
    """Device IDs this machine offers to jobs (see the module doc for the precedence)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    count = os.environ.get(ENV_COUNT)
    if count is not None:
        try:
            n = int(count)
        except ValueError:
            raise DiffxaiError(ENV_COUNT, f"must be an integer, got {count!r}") from None
        return [str(i) for i in range(max(0, n))]
    return _driver_device_ids()


def _lock_name(device: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9._-]", "_", device) + ".lock"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def try_acquire(n: int, pool: list[str], directory: Path) -> GpuLease | None:
    """Lock ``n`` free devices of ``pool`` all at once, or none (so jobs never deadlock)."""
    fds, got = [], []
    for dev in pool:
        fd = _try_lock(directory / _lock_name(dev))
        if fd is None:
            continue
        fds.append(fd)
        got.append(dev)
        if len(got) == n:
            return GpuLease(devices=got, source="slots", _fds=fds)
    GpuLease(devices=got, source="slots", _fds=fds).release()
    return None


def acquire_gpus(n: int, timeout: float | None = None, poll: float = 1.0) -> GpuLease:
    """Reserve ``n`` devices for this process and point ``CUDA_VISIBLE_DEVICES`` at them.

    Call before anything initialises CUDA (importing torch is fine). Blocks while every device
    is taken by other jobs (at most ``timeout`` seconds, ``None`` = forever), logging once a minute.
    With ``n == 0``, under SLURM, or with no devices present it changes nothing.

    Raises :class:`DiffxaiError` when the job asks for more devices than the machine has.
    """
    if n <= 0:
        return GpuLease(devices=[], source="none")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if os.environ.get(ENV_MODE, "on") == "off" or os.environ.get("SLURM_JOB_ID"):
        devices = [d for d in (visible or "").split(",") if d]
        log.info("gpu slots: using CUDA_VISIBLE_DEVICES=%s as given by the scheduler", visible)
        return GpuLease(devices=devices, source="scheduler")
    pool = device_pool()
    if not pool:
        log.info("gpu slots: %d GPU(s) requested but none present; running without", n)
        return GpuLease(devices=[], source="none")
    if n > len(pool):
        raise DiffxaiError("resources.gpu", f"job asks for {n} GPUs but this machine offers {len(pool)} ({pool})")
    directory = slots_dir()
    started = last_note = time.monotonic()
    while True:
        lease = try_acquire(n, pool, directory)
        if lease is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(lease.devices)
            log.info("gpu slots: CUDA_VISIBLE_DEVICES=%s (locked in %s)", os.environ["CUDA_VISIBLE_DEVICES"], directory)
            return lease
        now = time.monotonic()
        if timeout is not None and now - started >= timeout:
            raise DiffxaiError("resources.gpu", f"no {n} free GPU(s) of {pool} within {timeout:.0f}s ({directory})")
        if now - last_note >= 60:
            log.info("gpu slots: waiting for %d free GPU(s) of %s", n, pool)
            last_note = now
        time.sleep(poll)


@contextmanager
def gpu_slots(n: int, timeout: float | None = None):
    """Context-managed :func:`acquire_gpus`: the devices are released on exit."""
    lease = acquire_gpus(n, timeout=timeout)
    try:
        yield lease
    finally:
        lease.release()
