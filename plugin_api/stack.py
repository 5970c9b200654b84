"""A real local stack on loopback: our CLIP service(s) and a ``weaviate-server`` that uses them.

    with LocalStack("/path/to/model") as stack:     # or LocalStack(None): the built-in demo model
        client = stack.connect()
        ...

The service starts first and must be ready before Weaviate starts (Weaviate waits for its inference
container while it initialises its modules, before it opens its own port). Every process logs to a file
under ``stack.log_dir``; a failed start raises :class:`StackError` with the tail of the log.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from plugin_api.binary import find_weaviate_server
from plugin_api.processes import ManagedProcess, free_ports, inherited_env

if TYPE_CHECKING:
    import weaviate

SERVICE_READY_TIMEOUT = 180.0  # torch import + model load + warm-up on a busy 2-core machine
WEAVIATE_READY_TIMEOUT = 120.0
LOOPBACK = "127.0.0.1"
# Weaviate's cluster ports besides REST and gRPC (all needed by a single node too), by their settings:
# CLUSTER_GOSSIP_BIND_PORT, CLUSTER_DATA_BIND_PORT, RAFT_PORT, RAFT_INTERNAL_RPC_PORT.
CLUSTER_PORTS = ("gossip", "data", "raft", "raft_rpc")


class VectorizerService:
    """One ``python -m vectorizer_module`` process on a fixed loopback port (kept across restarts)."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None,
        *,
        port: int,
        log_path: Path,
        args: Sequence[str] = (),
        name: str = "clip-vectorizer",
    ) -> None:
        self.model = None if model is None else Path(model)  # None: the service's built-in demo model
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        model_args = [] if self.model is None else ["--model", str(self.model)]
        command = [
            sys.executable,
            "-m",
            "vectorizer_module",
            *model_args,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            *args,
        ]
        env = inherited_env()
        if self.model is None:
            env.pop("VECTORIZER_MODEL", None)  # None means the built-in model, whatever the shell has set
        self.process = ManagedProcess(
            name, command, log_path=log_path, ready_url=self.url + "/.well-known/ready", env=env, ready_statuses=(204,)
        )

    @property
    def running(self) -> bool:
        return self.process.running

    def start(self, *, wait: bool = True, timeout: float = SERVICE_READY_TIMEOUT) -> VectorizerService:
        self.process.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = SERVICE_READY_TIMEOUT) -> None:
        self.process.wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        return self.process.stop(timeout)


class WeaviateServer:
    """``weaviate-server`` on loopback ports, single node, anonymous access, ``multi2vec-clip`` enabled.

    Every port not given is a free one, picked at start. REST, memberlist and Raft bind 127.0.0.1.
    Weaviate v1.39.0 has no setting for the address of its gRPC port and its cluster data port: those
    listen on all interfaces (clients here use 127.0.0.1 only).
    """

    def __init__(
        self,
        binary: Path,
        *,
        inference_url: str,
        data_dir: Path,
        log_path: Path,
        http_port: int | None = None,
        grpc_port: int | None = None,
        gossip_port: int | None = None,
        data_port: int | None = None,
        raft_port: int | None = None,
        raft_rpc_port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        given = (http_port, grpc_port, gossip_port, data_port, raft_port, raft_rpc_port)
        fixed = {port for port in given if port}
        free = iter([port for port in free_ports(len(given)) if port not in fixed])  # never one of those given
        self.http_port, self.grpc_port, gossip, data, raft, raft_rpc = (port or next(free) for port in given)
        self.cluster_ports = {"gossip": gossip, "data": data, "raft": raft, "raft_rpc": raft_rpc}
        self.url = f"http://{LOOPBACK}:{self.http_port}"
        self.data_dir = data_dir
        env = inherited_env(
            ENABLE_MODULES="multi2vec-clip",
            CLIP_INFERENCE_API=inference_url,
            PERSISTENCE_DATA_PATH=str(data_dir),
            GRPC_PORT=str(self.grpc_port),
            CLUSTER_HOSTNAME=f"clip-weaviate-{self.http_port}",
            CLUSTER_GOSSIP_BIND_PORT=str(gossip),
            CLUSTER_DATA_BIND_PORT=str(data),
            # memberlist and Raft on loopback (by default they bind the machine's first address).
            # Not CLUSTER_IN_LOCALHOST: with it, Weaviate assumes the Raft RPC port is RAFT_PORT + 1 and a
            # node whose ports are not adjacent hangs joining itself, never electing a leader.
            CLUSTER_BIND_ADDR=LOOPBACK,
            CLUSTER_ADVERTISE_ADDR=LOOPBACK,
            RAFT_PORT=str(raft),
            RAFT_INTERNAL_RPC_PORT=str(raft_rpc),
            RAFT_BOOTSTRAP_EXPECT="1",
            RAFT_TIMEOUTS_MULTIPLIER="1",  # a single node elects itself in ~1 s instead of ~5 s
            AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED="true",
            DISABLE_TELEMETRY="true",
            GO_PROFILING_DISABLE="true",
            QUERY_DEFAULTS_LIMIT="20",
            LOG_LEVEL="warning",  # its info lines are many; warnings and errors are what a reader needs
            MODULES_VALIDATE_BASE_URL="false",  # when on, it refuses loopback inference URLs
        )
        env.update(extra_env or {})
        command = [str(binary), "--host", LOOPBACK, "--port", str(self.http_port), "--scheme", "http"]
        self.process = ManagedProcess(
            "weaviate-server",
            command,
            log_path=log_path,
            ready_url=self.url + "/v1/.well-known/ready",
            env=env,
            ready_statuses=(200,),
        )

    @classmethod
    def in_folder(cls, inference_url: str, workdir: Path) -> WeaviateServer:
        """The ``weaviate-server`` found on this machine, keeping its data in ``workdir/weaviate-data`` and its
        log in ``workdir/weaviate.log``."""
        return cls(
            find_weaviate_server(),
            inference_url=inference_url,
            data_dir=workdir / "weaviate-data",
            log_path=workdir / "weaviate.log",
        )

    def start(self, timeout: float = WEAVIATE_READY_TIMEOUT) -> WeaviateServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        self.process.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        return self.process.stop(timeout)


class LocalStack:
    """Our service + Weaviate, started in that order and stopped in the reverse order.

    ``workdir`` holds ``logs/`` and ``weaviate-data/``; by default a new temporary directory whose data
    (not its logs) is removed on stop. Ports not given (``http_port``, ``grpc_port``, ``service_port``,
    and ``cluster_ports`` by the names in :data:`CLUSTER_PORTS`) are free ones picked at start.
    ``add_service`` starts more service instances (e.g. on another model) for collections with their
    own ``inferenceUrl``; they are stopped with the stack.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None,
        *,
        workdir: str | os.PathLike[str] | None = None,
        weaviate_binary: str | os.PathLike[str] | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        service_port: int | None = None,
        cluster_ports: Mapping[str, int] | None = None,
        service_args: Sequence[str] = (),
        weaviate_env: Mapping[str, str] | None = None,
        keep_data: bool | None = None,
    ) -> None:
        self.binary = find_weaviate_server(weaviate_binary)  # fail before starting anything
        self.model = None if model is None else Path(model)  # None: the built-in demo model
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="clip-weaviate-"))
        self.log_dir = self.workdir / "logs"
        self.keep_data = (not self._own_workdir) if keep_data is None else keep_data
        self._http_port, self._grpc_port = http_port, grpc_port
        unknown = sorted(set(cluster_ports or {}) - set(CLUSTER_PORTS))
        if unknown:
            raise ValueError(f"cluster_ports has {unknown}; its keys are {list(CLUSTER_PORTS)}")
        self._cluster_ports = {f"{name}_port": port for name, port in (cluster_ports or {}).items()}
        self._service_args = list(service_args)
        self._weaviate_env = dict(weaviate_env or {})
        self.service = VectorizerService(
            self.model,
            port=service_port or free_ports(1)[0],
            log_path=self.log_dir / "clip-vectorizer.log",
            args=self._service_args,
        )
        self.extra_services: list[VectorizerService] = []
        self.weaviate: WeaviateServer | None = None

    @property
    def url(self) -> str:
        return self._require_weaviate().url

    @property
    def grpc_port(self) -> int:
        return self._require_weaviate().grpc_port

    def _require_weaviate(self) -> WeaviateServer:
        if self.weaviate is None:
            raise RuntimeError("the stack is not started")
        return self.weaviate

    def start(self) -> LocalStack:
        atexit.register(self.stop)
        try:
            self.service.start()
            self.weaviate = WeaviateServer(
                self.binary,
                inference_url=self.service.url,
                data_dir=self.workdir / "weaviate-data",
                log_path=self.log_dir / "weaviate.log",
                http_port=self._http_port,
                grpc_port=self._grpc_port,
                extra_env=self._weaviate_env,
                **self._cluster_ports,
            )
            self.weaviate.start()
        except BaseException:
            self.stop()
            raise
        return self

    def add_service(self, model: str | os.PathLike[str] | None, *, wait: bool = True) -> VectorizerService:
        """Start one more service instance on a free port (logs to ``clip-vectorizer-N.log``)."""
        index = len(self.extra_services) + 2
        service = VectorizerService(
            model,
            port=free_ports(1)[0],
            args=self._service_args,
            log_path=self.log_dir / f"clip-vectorizer-{index}.log",
            name=f"clip-vectorizer #{index}",
        )
        self.extra_services.append(service)
        return service.start(wait=wait)

    def connect(self, **kwargs: object) -> weaviate.WeaviateClient:
        from plugin_api.connection import connect

        return connect(self.url, grpc_port=self.grpc_port, **kwargs)  # type: ignore[arg-type]

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def log_tails(self, lines: int = 40) -> str:
        """The end of every log, for a failing test or a failed start."""
        parts = []
        for path in self.log_files():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """Weaviate first (it may still be calling the services), then every service. Idempotent."""
        atexit.unregister(self.stop)
        if self.weaviate is not None:
            self.weaviate.stop()
        for service in [*self.extra_services, self.service]:
            service.stop()
        if not self.keep_data:
            shutil.rmtree(self.workdir / "weaviate-data", ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
