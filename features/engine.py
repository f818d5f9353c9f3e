"""Running a function over every partition: in this process, or as tasks on Ray.

The function and its arguments are the same for both engines (module-level functions and
picklable arguments), so results do not depend on the engine. Results come back in
partition order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from features.config import EngineParams

T = TypeVar("T")
S = TypeVar("S")


class EngineError(ValueError):
    """The engine cannot run (Ray missing, a cluster address that does not answer)."""


@contextlib.contextmanager
def ray_session(engine: EngineParams) -> Iterator[None]:
    """Ray connected for the block: the cluster at `engine.address`, or a local Ray started
    for the block and stopped after it. Already connected (a caller's session): kept."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a pinned dependency
        raise EngineError(f"engine kind ray: cannot import ray ({exc})") from None
    if ray.is_initialized():
        yield
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if engine.address:
        options["address"] = engine.address
    else:
        options["num_cpus"] = engine.num_cpus
        options["object_store_memory"] = engine.object_store_mb * 1024 * 1024
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = engine.address or "a local Ray"
        raise EngineError(f"engine kind ray: cannot connect to {where}: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()


def map_partitions(
    fn: Callable[[S, int], T], shared: S, partitions: Sequence[int], engine: EngineParams
) -> list[T]:
    """`fn(shared, index)` for every partition index, results in the order of `partitions`:
    one after the other in this process (`local`), or as Ray tasks of one CPU each (`ray`,
    inside `session`; `shared` is put in Ray's object store once for all tasks)."""
    if engine.kind == "local":
        return [fn(shared, index) for index in partitions]
    import ray

    if not ray.is_initialized():
        raise EngineError("engine kind ray: map_partitions runs inside engine.session")
    task = ray.remote(num_cpus=1, max_retries=0)(fn)
    ref = ray.put(shared)
    return list(ray.get([task.remote(ref, index) for index in partitions]))


@contextlib.contextmanager
def session(engine: EngineParams) -> Iterator[None]:
    """What `map_partitions` needs for the block: nothing locally, a Ray session for Ray."""
    if engine.kind == "local":
        yield
    else:
        with ray_session(engine):
            yield
