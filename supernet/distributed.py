"""Several hosts: one JAX process per host (`jax.distributed`), data parallel over them all.

Each process reads its rows of every global batch (`loader.Shard`), the state is replicated
on every device of every process, and the gradients are summed by XLA's collectives (NCCL
on GPUs; gloo between CPU processes, which is how the test runs two processes on one
machine). Process 0 alone writes checkpoints and database rows. JAX's coordination service
checks every process's heartbeat: a process that dies stops the others within
`HEARTBEAT_S` seconds instead of leaving them waiting in a collective for ever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hwnas.exceptions import HwnasError

HEARTBEAT_S = 30  # JAX's default is 100 s
INIT_TIMEOUT_S = 300  # how long a process waits for all the others to join


class ClusterError(HwnasError):
    """Flags (or environment variables) that do not describe a job; one line says why."""


@dataclass(frozen=True)
class Cluster:
    coordinator: str | None = None
    num_processes: int = 1
    process_id: int = 0

    @classmethod
    def from_args(
        cls, coordinator: str | None, num_processes: int | None, process_id: int | None
    ) -> Cluster:
        """From flags, else the environment variables JAX's launchers set
        (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)."""
        env = os.environ
        coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS") or None
        n = num_processes if num_processes is not None else _int_env("JAX_NUM_PROCESSES", 1)
        pid = process_id if process_id is not None else _int_env("JAX_PROCESS_ID", 0)
        if n < 1:
            raise ClusterError(f"must be at least 1, got {n}", field="num_processes")
        if not 0 <= pid < n:
            raise ClusterError(f"must be in 0..{n - 1}, got {pid}", field="process_id")
        if n > 1 and not coordinator:
            raise ClusterError(
                "a job of several processes needs HOST:PORT (process 0's address)",
                field="coordinator",
            )
        if coordinator and ":" not in coordinator:
            raise ClusterError(f"must be HOST:PORT, got {coordinator!r}", field="coordinator")
        return cls(coordinator if n > 1 else None, n, pid)

    @property
    def several(self) -> bool:
        return self.num_processes > 1

    @property
    def leader(self) -> bool:
        """The process that writes checkpoints and database rows."""
        return self.process_id == 0

    def start(self) -> None:
        """Join the job (before any other JAX call); nothing for a single process."""
        if not self.several:
            return
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(
                self.coordinator,
                num_processes=self.num_processes,
                process_id=self.process_id,
                initialization_timeout=INIT_TIMEOUT_S,
                heartbeat_timeout_seconds=HEARTBEAT_S,
            )
        except Exception as e:  # jax raises several kinds (timeouts, address in use)
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ClusterError(
                f"process {self.process_id} cannot join the job at {self.coordinator} "
                f"({first}); check the address and that every process was started"
            ) from None


def same_everywhere(text: str) -> None:
    """Every process of the job holds the same `text` (the run's settings and start step),
    else ClusterError on all of them: processes that disagree would wait for each other in
    different steps for ever."""
    import jax

    if jax.process_count() == 1:
        return
    import hashlib

    import numpy as np
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.uint32)
    mine = digest.copy()
    everyone = np.asarray(multihost_utils.process_allgather(mine))
    if not (everyone == mine).all():
        raise ClusterError(
            "the processes of the job disagree on the run (its settings, or the step its "
            "checkpoint resumes at): start every process with the same arguments and a "
            "runs folder all of them see",
            field="runs_dir",
        )


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ClusterError(f"{name} must be an integer, got {raw!r}") from None
