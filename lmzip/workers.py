"""Stage 4, scaled out: the engine's blocks coded by Ray actors, the file identical to one process's.

Blocks are independent (each one resets the model; with workers, mixing keeps a
history per block) and an exact model computes the same integers on any machine,
so any actor may code any block. The driver
tokenizes and cuts the blocks exactly as one process does; ``WorkerPool.map``
sends them to the actors and gives the results back in the file's order, with
at most ``window`` blocks out at a time, so memory stays bounded however large
the input. A block whose actor dies, or raises something other than an lmzip
error, goes to another actor (the dead one is replaced); lmzip's own errors,
about the data or the model, would only recur and are raised at once.

Each job carries its file's ``Task``: how to load the model, what to set it to
(the encoder's stream plan, or the settings a file's header records), and the
fingerprint the header holds (weights, settings, library versions). An actor
whose predictor does not match it refuses: a float model's numbers depend on
the CPU's kernel path, so its blocks may only be coded by workers that compute
like the driver.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from .errors import FingerprintMismatch, InputOutputError, LmzipError, WorkerError
from .fingerprint import fingerprint
from .mixing import History
from .models.base import Predictor

# Ray 2.59+ starts clusters with token authentication on, but a driver sends the token only when told to
_AUTH_HINT = ("; RAY_AUTH_MODE here must match the cluster's (`ray start` turns token authentication on "
              "since Ray 2.59: set RAY_AUTH_MODE=token, with the head's token in ~/.ray/auth_token or RAY_AUTH_TOKEN)")
ATTEMPTS = 3  # tries of one block, each on another actor where there is one
POLL_SECONDS = 0.5  # how long a wait lasts before the driver checks for an interrupt


def check_splittable(predictor: Predictor) -> None:
    """Refuse a learning model: each of its blocks learns from the ones before it."""
    if predictor.capabilities.learns:
        raise InputOutputError("a learning model (--online) cannot be split across workers: each block "
                               "learns from the ones before it; drop --workers")


@dataclass(frozen=True)
class Task:
    """What every block of one file shares, sent with each of them."""

    model_key: str  # the same key, the same loaded model: an actor loads each model once
    load: Callable[[], Predictor]  # runs on the actor
    fingerprint: tuple  # (weights hash, settings text, versions) the file's header records
    plan: int | None = None  # compressing: ``Predictor.plan``'s stream count
    adopt: str | None = None  # decompressing: the header's settings text, for ``Predictor.adopt``
    mix: str | None = None  # the header's mix setting (engine.encode_block / decode_block)
    lead: int = 0  # the header's lead (layout.py)
    key: str = field(default_factory=lambda: os.urandom(8).hex())  # this file's task


def load_key(load: Callable[[], Predictor]) -> str:
    """A name for what ``load`` loads: equal keys, the same model (so an actor keeps it loaded)."""
    func = getattr(load, "func", load)
    args = (getattr(load, "args", ()), sorted(getattr(load, "keywords", {}).items()))
    return f"{func.__module__}.{func.__qualname__}{args!r}"


class BlockWorker:
    """A Ray actor's state: the model it has loaded, set up for the file it codes now."""

    def __init__(self):
        self.model_key, self.predictor, self.task_key = None, None, None

    def describe(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid()}

    def _ready(self, task: Task) -> Predictor:
        from .settings import Settings

        if task.model_key != self.model_key:
            self.predictor, self.task_key = None, None  # one model in memory at a time
            self.predictor, self.model_key = task.load(), task.model_key
        if task.key != self.task_key:
            predictor = self.predictor
            check_splittable(predictor)
            predictor.begin_file()
            if task.adopt is not None:
                predictor.adopt(Settings.from_header(task.adopt))
            else:
                predictor.plan(task.plan)
            here = fingerprint(predictor)
            if here != task.fingerprint:
                raise FingerprintMismatch(
                    f"a worker on {socket.gethostname()} computes {predictor.name} otherwise than the file's "
                    f"maker ({_difference(task.fingerprint, here)}): float models need workers on the same "
                    "CPU kernel path and libraries; an integer model runs anywhere")
            self.task_key = task.key
        return self.predictor

    def encode(self, task: Task, chunks):
        from . import engine

        return engine.encode_block(self._ready(task), chunks, history=History.for_block(task.mix), lead=task.lead)

    def decode(self, task: Task, method: int, data: bytes, lengths: list[int], original_length: int) -> list[bytes]:
        from .blocks import block_bytes

        return list(block_bytes(self._ready(task), original_length, method, data, lengths, lambda n: None,
                                 History.for_block(task.mix), task.lead))


def _difference(file: tuple, here: tuple) -> str:
    names = ("weights", "settings", "versions")
    return "; ".join(f"{name}: file {a.hex() if isinstance(a, bytes) else a}, worker "
                     f"{b.hex() if isinstance(b, bytes) else b}" for name, a, b in zip(names, file, here) if a != b)


@dataclass
class _Sent:
    index: int
    job: tuple
    slot: int
    attempt: int
    actor: object = None  # the actor it went to (a slot's actor changes when one dies)


class WorkerPool:
    """N Ray actors that code blocks; a local Ray runtime, or a cluster's (``address``).

    Use as a context manager: closing stops the actors, and the Ray runtime if
    the pool started it. Several threads may ``map`` at once (files in parallel);
    ``window`` bounds the blocks out at a time over all of them.
    """

    def __init__(self, workers: int | None = None, address: str | None = None, threads: int = 1,
                 window: int | None = None):
        try:
            import ray
        except ImportError:
            raise InputOutputError("workers run on Ray, which is not installed: pip install 'lmzip[cluster]'") from None

        self.threads, self.actors, self.closing = threads, [], threading.Event()
        self.started_ray = _connect(address, workers, threads)
        try:
            free = _free_cpus(workers * threads if workers else 1)
            if workers is None:
                workers = max(1, free // threads)
            if workers * threads > free:  # an actor waits for its CPUs: better one line now than a hang
                raise WorkerError(f"{workers} workers of {threads} thread{'s' * (threads > 1)} need "
                                  f"{workers * threads} CPUs; the Ray cluster has {free} free")
            self._actor_class = ray.remote(BlockWorker).options(num_cpus=threads, max_restarts=0)
            self.actors = [self._actor_class.remote() for _ in range(workers)]
            try:
                self.hosts = ray.get([a.describe.remote() for a in self.actors])  # every actor is up
            except ray.exceptions.RayError as exc:
                raise WorkerError(f"the workers could not start ({type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[0]}){_AUTH_HINT}") from None
        except BaseException:
            self.close()
            raise
        self.window = window or 2 * workers
        self._slots = threading.BoundedSemaphore(self.window)
        self._lock = threading.Lock()
        self._busy = [0] * workers
        self.retried = 0  # blocks sent again after a failure (for tests and reports)

    @property
    def size(self) -> int:
        return len(self.actors)

    def map(self, method: str, task: Task, jobs: Iterable[tuple]) -> Iterator:
        """``actor.method(task, *job)`` for each job, results in the jobs' order."""
        import ray

        jobs = enumerate(jobs)
        waiting: dict = {}  # ObjectRef -> _Sent
        done: dict[int, object] = {}  # results that came back before an earlier block's
        next_index, more = 0, True
        try:
            while True:
                # wait for a slot only with nothing else to wait for (slots held for results are ours)
                while more and self._take_slot(block=not waiting and next_index not in done):
                    item = next(jobs, None)
                    if item is None:
                        self._slots.release()
                        more = False
                        break
                    self._send(waiting, method, task, _Sent(item[0], item[1], -1, 1))
                if next_index in done:
                    result = done.pop(next_index)
                    self._slots.release()
                    next_index += 1
                    yield result
                    continue
                if not waiting:
                    return
                ready, _ = ray.wait(list(waiting), num_returns=1, timeout=POLL_SECONDS)
                if self.closing.is_set():
                    raise KeyboardInterrupt
                if ready:
                    sent = waiting.pop(ready[0])
                    with self._lock:
                        self._busy[sent.slot] -= 1
                    result = self._result(ready[0], sent, waiting, method, task)
                    if result is not _PENDING:
                        done[sent.index] = result
        finally:
            for _ in range(len(waiting) + len(done)):
                self._slots.release()
            for ref in waiting:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def _take_slot(self, block: bool) -> bool:
        while not self._slots.acquire(timeout=POLL_SECONDS if block else 0):
            if not block:
                return False
            if self.closing.is_set():
                raise KeyboardInterrupt
        return True

    def _send(self, waiting: dict, method: str, task: Task, sent: _Sent, avoid: int = -1) -> None:
        with self._lock:  # the least busy actor, another than the one that just failed where possible
            order = sorted(range(self.size), key=lambda i: (i == avoid, self._busy[i]))
            sent.slot = order[0]
            self._busy[sent.slot] += 1
            sent.actor = self.actors[sent.slot]
        waiting[getattr(sent.actor, method).remote(task, *sent.job)] = sent

    def _result(self, ref, sent: _Sent, waiting: dict, method: str, task: Task):
        """The block's result; or, where its actor died or failed, the block sent again (None for now)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return ray.get(ref)
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, LmzipError):
                raise cause from None
            why = f"{type(cause).__name__}: {cause}"
        except RayActorError as exc:
            self._replace(sent.slot, sent.actor)
            why = f"its worker died ({type(exc).__name__})"
        if sent.attempt >= ATTEMPTS:
            raise WorkerError(f"block {sent.index} failed on {ATTEMPTS} workers; the last time: {why}")
        self.retried += 1
        self._send(waiting, method, task, _Sent(sent.index, sent.job, -1, sent.attempt + 1), avoid=sent.slot)
        return _PENDING

    def _replace(self, slot: int, dead) -> None:
        """A new actor in place of a dead one, once however many of its blocks report the death: a
        block sent to the dead actor that reports after the new one took the slot must not kill the
        new one (it did, and the blocks resent there died with it: about one run in eight)."""
        import ray

        with self._lock:
            if self.actors[slot] is not dead:
                return
            with contextlib.suppress(Exception):
                ray.kill(dead, no_restart=True)
            self.actors[slot] = self._actor_class.remote()

    def close(self) -> None:
        import ray

        self.closing.set()
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.actors = []
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _free_cpus(wanted: int, grace: float = 5.0) -> int:
    """The cluster's free CPUs, waiting up to ``grace`` seconds for ``wanted`` of them: actors just
    stopped (a previous pool's) give theirs back a moment later."""
    import ray

    deadline = time.monotonic() + grace
    while True:
        free = int(ray.available_resources().get("CPU", 0))
        if free >= wanted or time.monotonic() > deadline:
            return free
        time.sleep(0.25)


class _Pending:
    """A block sent again: its result is not in yet."""


_PENDING = _Pending()


def _connect(address: str | None, workers: int | None, threads: int) -> bool:
    """Join the cluster at ``address``, or start a local Ray runtime; True if this call started one."""
    import ray

    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, ... for a bad cluster
            raise WorkerError(f"cannot join the Ray cluster at {address}: {exc}{_AUTH_HINT}") from None
        return True
    try:
        ray.init(num_cpus=(workers or os.cpu_count() or 1) * threads, **quiet)
    except BaseException:  # Ctrl-C while Ray starts: stop what it started
        ray.shutdown()
        raise
    return True


def _check_reachable(address: str) -> None:
    """A host:port that nothing listens on fails in a second, not after Ray's long retries."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputOutputError(f"--cluster {address}: expected HOST:PORT of a Ray head node (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise WorkerError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from None

