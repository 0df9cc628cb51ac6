"""A RabbitMQ node of the test run's own, for faults that stop or restart the broker.

The shared node (``rabbit@localhost`` on 5672, distribution port 25672) serves every other
engineer's tests, so the chaos suite never touches it: ``PrivateRabbitMQ`` starts a second node
on this machine with a name of its own (``weir-chaos-<pid>@localhost``), its own AMQP and
distribution ports, its own data, log, pid and config files under a temporary directory, an empty
plugin list (no management plugin) and an empty ``rabbitmq-env.conf`` (the system one names the
shared node). ``HOME`` points at the same directory, so the node and our ``rabbitmqctl -n <node>``
calls share an Erlang cookie of their own. Every ``rabbitmqctl`` call names our node.

The node shares the machine's ``epmd`` (the name registry on 4369) with the shared node, as
any two Erlang nodes on one host do; it never stops it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.stack import free_port

__all__ = ["PrivateRabbitMQ"]

_SBIN = Path(os.environ.get("WEIR_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
_BOOT_TIMEOUT = 90


class PrivateRabbitMQ:
    """One node: ``start``, ``stop``, ``restart``, ``remove``; ``url`` is its AMQP address."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodename = f"weir-chaos-{os.getpid()}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.pid_file = root / "rabbitmq.pid"
        self.restarts = 0
        self.boot_seconds: list[float] = []
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> PrivateRabbitMQ:
        root = Path(tempfile.mkdtemp(prefix="weir-chaos-rabbitmq-"))
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq-env.conf").write_text("")
        (root / "rabbitmq.conf").write_text("loopback_users = none\n")
        return cls(root)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        """Start the node (same data directory each time) and wait until it serves AMQP."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"RabbitMQ node {self.nodename} is already running")
        started = time.monotonic()
        with (self.root / "server.log").open("ab") as sink:
            self._process = subprocess.Popen(
                [str(_SBIN / "rabbitmq-server")],
                env=self._environment(),
                cwd=self.root,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C to the test run is ours to relay, not its
            )
        self._ctl("wait", str(self.pid_file), "--timeout", str(_BOOT_TIMEOUT))
        self.boot_seconds.append(time.monotonic() - started)

    def stop(self) -> None:
        """Stop the node cleanly (``rabbitmqctl -n <our node> stop``) and reap its process."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self._ctl("stop", str(self.pid_file), check=False)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def remove(self) -> None:
        """Stop the node and delete its directory (kept when ``WEIR_TEST_KEEP_NODES`` is set)."""
        self.stop()
        if not os.environ.get("WEIR_TEST_KEEP_NODES"):
            shutil.rmtree(self.root, ignore_errors=True)

    def output(self) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def _environment(self) -> dict[str, str]:
        root = self.root
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(root),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _ctl(self, *args: str, check: bool = True) -> None:
        """``rabbitmqctl`` for our node only: ``-n`` is never left out."""
        done = subprocess.run(
            [str(_SBIN / "rabbitmqctl"), "-n", self.nodename, "-q", *args],
            env=self._environment(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=_BOOT_TIMEOUT + 30,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl -n {self.nodename} {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}\n--- node output ---\n{self.output()[-3000:]}"
            )
