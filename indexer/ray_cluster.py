"""Ray for ingestion: the optional import (a missing extra says how to install it), connecting to
a cluster (or starting Ray on this machine), and the pool of embed actors sized to the cluster.

Nothing here is imported unless `crossmedia index --ray` (or `RayIngestor`) is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from indexer.ray_stages import EmbedWorker, RemoteEncoder
from retrieval.errors import CrossmediaError, UnknownModelError

RAY_INSTALL = "pip install -e '.[ray]'"
START_TIMEOUT_S = 600.0  # loading the encoder in every actor; a pool that cannot be placed fails


class RayMissingError(CrossmediaError, ImportError):
    """`--ray` without the optional `ray` extra installed."""


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray. `address`: "local" for a new Ray instance on this machine, "auto" for
    the cluster this machine joined (`ray start`), "HOST:6379" for a head node; None for
    $RAY_ADDRESS, else "local". A process already connected to Ray (`ray.init`) stays on it.
    `workers`: embed actors, by default one per GPU of the cluster, else one per CPU.
    `threads`: torch threads per CPU actor. `in_flight`: blocks in flight at once (default
    2 x workers + 2). `max_retries`: how often a dead worker's task is retried."""

    address: str | None = None
    workers: int | None = None
    threads: int = 1
    in_flight: int | None = None
    max_retries: int = 3


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError(
            "Indexing with --ray needs Ray, an optional extra that is not installed. Install it "
            f"in the crossmedia checkout with `{RAY_INSTALL}` (on the driver and on every node "
            "of the cluster), or index without --ray."
        ) from exc
    return ray


def connect(address: str | None) -> tuple[Any, bool]:
    """Ray, connected; True when this call connected (and so disconnects afterwards)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    # A new instance on this machine needs no dashboard for a batch job.
    extra = {"include_dashboard": False} if address == "local" else {}
    ray.init(address=address, log_to_driver=False, **extra)
    return ray, True


@dataclass
class EmbedPool:
    """The embed actors: one encoder each, loaded once; `num_gpus=1` each where the cluster has
    GPUs, else `num_cpus=1` each. Decode tasks are spread over the nodes; on a CPU cluster they
    claim no CPU of their own (the actors hold them all); the driver decodes at most
    `decode_slots` blocks at once, one per CPU."""

    ray: Any
    actors: list[Any]
    encoder: RemoteEncoder
    pids: list[int]
    decode_options: dict[str, Any] = field(default_factory=dict)
    decode_slots: int = 1  # blocks decoded at once: one per CPU of the cluster

    @property
    def size(self) -> int:
        return len(self.actors)

    @classmethod
    def start(cls, ray: Any, model: str, options: RayOptions, batch_size: int) -> EmbedPool:
        from retrieval.encoders import list_models
        from retrieval.encoders.registry import lookup

        if lookup(model) is None:
            raise UnknownModelError(f"Unknown model {model!r}. Available: {list_models()}")
        n, actor_options, decode_options, device = _sizes(ray, options)
        actor_cls = ray.remote(EmbedWorker).options(
            max_restarts=options.max_retries, max_task_retries=options.max_retries, **actor_options
        )
        actors = [actor_cls.remote(model, device, options.threads, batch_size) for _ in range(n)]
        try:
            described = ray.get([a.describe.remote() for a in actors], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as exc:
            for a in actors:
                ray.kill(a)
            raise CrossmediaError(
                f"{n} embed workers ({actor_options}) did not start within {START_TIMEOUT_S:.0f} s "
                f"on a cluster with {ray.cluster_resources()}: pass fewer workers or add nodes."
            ) from exc
        except ray.exceptions.RayError as exc:
            for a in actors:
                ray.kill(a)
            raise CrossmediaError(
                f"The embed workers could not load model {model!r}: {exc}"
            ) from exc
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pids = [pid for _, pid in described]
        return cls(ray, actors, described[0][0], pids, decode_options, slots)

    def embed(self, actor: int, media: list, texts: list, payloads: Any) -> Any:
        return self.actors[actor].embed.remote(media, texts, payloads)

    def least_busy(self, busy: list[int]) -> int:
        """The actor with the fewest calls in flight (`busy` lists each call's actor)."""
        return min(range(self.size), key=lambda i: (busy.count(i), i))

    def stop(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []


def _sizes(ray: Any, options: RayOptions) -> tuple[int, dict, dict, str | None]:
    """(actors, actor resources, decode task resources, device) for this cluster."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    spread = {"scheduling_strategy": "SPREAD"}
    if gpus:
        return (
            options.workers or gpus,
            {"num_gpus": 1, "num_cpus": 1},
            {"num_cpus": 1, **spread},
            None,
        )
    n = options.workers or max(cpus, 1)
    if n > max(cpus, 1):
        raise CrossmediaError(
            f"{n} embed workers asked for, but the Ray cluster has {cpus} CPUs (one per CPU "
            "worker): pass at most that many, or add nodes (`ray start --address HEAD:6379`)."
        )
    return n, {"num_cpus": 1}, {"num_cpus": 0, **spread}, "cpu"
