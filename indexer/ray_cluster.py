"""Ray for ingestion: the optional import (a missing extra says how to install it), connecting to
a cluster (or starting Ray on this machine), and the pool of embed actors sized to the cluster.

Nothing here is imported unless `crossmedia index --ray` (or `RayIngestor`) is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from indexer.ray_stages import DecodeWorker, EmbedWorker, RemoteEncoder
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
    """The actors: embed actors, one encoder each, loaded once (`num_gpus=1` each where the
    cluster has GPUs, else `num_cpus=1` each), and one decode actor per CPU of the cluster,
    spread over the nodes (on a CPU cluster they claim no CPU of their own: the embed actors
    hold them all); the driver gives each decode actor one block at a time."""

    ray: Any
    actors: list[Any]
    decoders: list[Any]
    encoder: RemoteEncoder | None = None
    pids: list[int] = field(default_factory=list)

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
        retries = {"max_restarts": options.max_retries, "max_task_retries": options.max_retries}
        embed_cls = ray.remote(EmbedWorker).options(**retries, **actor_options)
        decode_cls = ray.remote(DecodeWorker).options(**retries, **decode_options)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pool = cls(
            ray,
            [embed_cls.remote(model, device, options.threads, batch_size) for _ in range(n)],
            [decode_cls.remote() for _ in range(slots)],
        )
        try:
            described = ray.get([a.describe.remote() for a in pool.actors], timeout=START_TIMEOUT_S)
            ray.get([d.ready.remote() for d in pool.decoders], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as exc:
            pool.stop()
            raise CrossmediaError(
                f"{n} embed workers ({actor_options}) did not start within {START_TIMEOUT_S:.0f} s "
                f"on a cluster with {ray.cluster_resources()}: pass fewer workers or add nodes."
            ) from exc
        except ray.exceptions.RayError as exc:
            pool.stop()
            raise CrossmediaError(
                f"The embed workers could not load model {model!r}: {exc}"
            ) from exc
        pool.encoder, pool.pids = described[0][0], [pid for _, pid in described]
        return pool

    def decode(self, decoder: int, *args: Any) -> Any:
        """Refs of ((light, seconds), payloads) of `ray_stages.decode_block(*args)`."""
        return self.decoders[decoder].decode.options(num_returns=2).remote(*args)

    def embed(self, actor: int, media: list, texts: list, payloads: Any) -> Any:
        return self.actors[actor].embed.remote(media, texts, payloads)

    def least_busy(self, busy: list[int]) -> int:
        """The actor with the fewest calls in flight (`busy` lists each call's actor)."""
        return min(range(self.size), key=lambda i: (busy.count(i), i))

    def stop(self) -> None:
        for a in self.actors + self.decoders:
            self.ray.kill(a)
        self.actors, self.decoders = [], []


def _sizes(ray: Any, options: RayOptions) -> tuple[int, dict, dict, str | None]:
    """(actors, actor resources, decode actor resources, device) for this cluster."""
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
