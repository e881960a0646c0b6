"""``serve`` on more than one core: a supervisor and ``[smtp] processes`` gateway processes.

One Python process runs its Python code on one core at a time (the interpreter lock), and
a mail costs the gateway many times what aiosmtpd alone spends on it (docs/performance.md),
so one process leaves the other cores idle. As Postfix's master(8) does for smtpd, the
supervisor binds the listening sockets once (``listeners.py``), checks what would stop a
gateway from starting, upgrades the schema, then forks the gateway processes. Each is a
whole ``serve`` (SMTP, LMTP, web, delivery worker) accepting on the shared sockets; they
meet only in the database, which is the architecture's rule for several gateways anyway
(outbox claims, per-transaction locks, and on SQLite the writers' lock of ``writerlock.py``).

The supervisor replaces a process that dies (a mail it held was not answered ``250``, so
the client retries it), and gives up with ``EX_SOFTWARE`` when they keep dying at start.
SIGTERM or SIGINT is passed on to every process, each finishes its mail as a lone ``serve``
does, and the supervisor exits 0 once all have. Gateway processes also get SIGTERM if the
supervisor itself dies (``PR_SET_PDEATHSIG``), so none is left serving on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time

from mailtracker.config import Config
from mailtracker.listeners import Listeners, bind_listeners, remove_socket
from mailtracker.sysexits import EX_SOFTWARE

__all__ = ["QUICK_DEATH", "QUICK_DEATHS_LIMIT", "run_supervisor"]

log = logging.getLogger(__name__)

WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
QUICK_DEATH = 10.0  # seconds: a process that dies sooner did not get going
QUICK_DEATHS_LIMIT = 5  # in a row: something is wrong that restarting will not fix
_PR_SET_PDEATHSIG = 1  # prctl(2)


def run_supervisor(config: Config) -> int:
    """Bind, check, fork ``config.smtp.processes`` gateways and watch them until told to stop."""
    _check_startable(config)
    listeners = bind_listeners(config)
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    try:
        return Supervisor(config, listeners).run()
    finally:
        listeners.close()
        _remove_lmtp_socket(config, listeners)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)


def _check_startable(config: Config) -> None:
    """What would stop every gateway process stops the supervisor instead, with one line:
    a bad certificate, DKIM key or smarthost, or a database it cannot upgrade."""
    from mailtracker.receive import tls_context
    from mailtracker.store import Store
    from mailtracker.transport import transport_for

    transport_for(config)
    tls_context(config.smtp, str(config.path or "config"))
    Store.open(config, pool_size=1).close()  # no connection may cross the fork


def _remove_lmtp_socket(config: Config, listeners: Listeners) -> None:
    from mailtracker.configfile import lmtp_socket_path

    path = lmtp_socket_path(config.lmtp.listen)
    if path is not None and listeners.lmtp:
        remove_socket(path)


class Supervisor:
    """The gateway processes by pid, each with its slot and when it started."""

    def __init__(self, config: Config, listeners: Listeners) -> None:
        self.config = config
        self.listeners = listeners
        self.children: dict[int, tuple[int, float]] = {}
        self.quick_deaths = 0
        self.pid = os.getpid()

    def run(self) -> int:
        count = self.config.smtp.processes
        for slot in range(count):
            self._spawn(slot)
        log.info("supervising %d gateway processes", count)
        while True:
            sig = signal.sigwait(WATCHED)
            if sig != signal.SIGCHLD:
                log.info("received %s: stopping the gateway processes", signal.Signals(sig).name)
                return self._stop()
            if not self._replace_dead():
                self._stop()
                return EX_SOFTWARE

    def _spawn(self, slot: int) -> None:
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_gateway_process(self.config, self.listeners, self.pid))
        self.children[pid] = (slot, time.monotonic())

    def _replace_dead(self) -> bool:
        """Reap what died and start another in its place; False when they keep dying."""
        for pid, status in _reap():
            slot, started = self.children.pop(pid, (-1, 0.0))
            if slot < 0:
                continue
            log.warning("gateway process %d %s; starting another", pid, _describe(status))
            quick = time.monotonic() - started < QUICK_DEATH
            self.quick_deaths = self.quick_deaths + 1 if quick else 0
            if self.quick_deaths >= QUICK_DEATHS_LIMIT:
                log.error("gateway processes died %d times in a row at start", self.quick_deaths)
                return False
            self._spawn(slot)
        return True

    def _stop(self) -> int:
        """SIGTERM to every gateway process, then wait: each finishes its mail first."""
        self.listeners.close()  # what arrives now is refused, as by a lone serve stopping
        for pid in self.children:
            _signal(pid, signal.SIGTERM)
        worst = 0
        while self.children:
            pid, status = os.waitpid(-1, 0)
            if self.children.pop(pid, None) is not None and os.waitstatus_to_exitcode(status):
                worst = EX_SOFTWARE
        log.info("stopped")
        return worst


def _gateway_process(config: Config, listeners: Listeners, supervisor: int) -> int:
    """One gateway, in a forked child: the signals the supervisor blocked are its own again."""
    from mailtracker.serve import serve_forever

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
        if os.getppid() != supervisor:  # it died before the line above took effect
            return 0
        code = asyncio.run(serve_forever(config, listeners=listeners))
    except BaseException:
        log.exception("gateway process %d failed", os.getpid())
        code = EX_SOFTWARE
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _reap() -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        found.append((pid, status))


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it died, and waits to be reaped
        os.kill(pid, sig)
