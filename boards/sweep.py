"""Run a sweep's points on Dask and keep each result under its digest in the output folder.

The folder::

    OUT/float/<digest>.json        float accuracies per model
    OUT/quant/<digest>.json        a quantization's figures, OUT/quant/<digest>/ its model
    OUT/points/<digest>.json       a hardware point's estimate (+ <digest>.synth.json)
    OUT/points.json, points.csv    every point, merged (boards.pareto.write_results)

The client submits only what the folder lacks, each task keyed by its digest (the scheduler
runs a key once however often it is asked), and writes each result the moment it arrives
(``*.tmp`` then renamed), so an interrupted sweep resumes where it stopped and a dying worker
loses only the task it was running: the scheduler reruns that task on another worker
(``distributed``'s ``allowed-failures``) and a lost in-memory quantization is recomputed from
its spec. The workers need no shared file system: models travel through Dask.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import explore as ex

__all__ = ["Plan", "make_plan", "ResultStore", "run_sweep", "local_cluster"]


@dataclass
class Plan:
    """Every task of a sweep by digest: ``floats`` spec, ``quants`` (spec, float digest),
    ``points`` (spec, quant digest)."""
    floats: dict = field(default_factory=dict)
    quants: dict = field(default_factory=dict)
    points: dict = field(default_factory=dict)


def make_plan(models, pairs, targets, arrays=(None,), recipes=("auto",), layer_bits=(None,),
              data=None):
    """The cross product models x (W, A) pairs x recipes x per-layer bits x targets x
    arrays."""
    plan = Plan()
    for model in models:
        fs = ex.float_spec(model, data)
        fd = ex.digest(fs)
        plan.floats[fd] = fs
        for w, a in pairs:
            for recipe in recipes:
                for lb in layer_bits:
                    qs = ex.quant_spec(model, w, a, recipe, lb, data)
                    qd = ex.digest(qs)
                    plan.quants[qd] = (qs, fd)
                    for target in targets:
                        for array in arrays:
                            hs = ex.hw_spec(qs, target, array)
                            plan.points[ex.digest(hs)] = (hs, qd)
    return plan


def _write(path, doc):
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent, or half-written by a process that died: not a result


class ResultStore:
    """The output folder's results by digest."""

    def __init__(self, out):
        self.out = Path(out)
        for sub in ("float", "quant", "points"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)

    def path(self, kind, d, suffix=".json"):
        return self.out / {"float": "float", "quant": "quant", "hw": "points",
                           "synth": "points"}[kind] / f"{d}{suffix}"

    def get(self, kind, d):
        return _read(self.path(kind, d, ".synth.json" if kind == "synth" else ".json"))

    def put(self, kind, d, value):
        if kind == "quant":
            figures, qm = value
            if qm is not None:
                from quantflow.serialize import save

                save(qm, self.path("quant", d, ""))  # atomic: written beside, renamed
            _write(self.path("quant", d), figures)
        else:
            _write(self.path(kind, d, ".synth.json" if kind == "synth" else ".json"), value)

    def quant_value(self, d):
        """A stored quantization as :func:`boards.explore.quant_task` returns it, or None."""
        figures = self.get("quant", d)
        if figures is None:
            return None
        if "error" in figures:
            return figures, None
        folder = self.path("quant", d, "")
        if not folder.exists():
            return None
        from quantflow.serialize import load

        return figures, load(folder)


def local_cluster(n_workers=2):
    """The default cluster: ``n_workers`` worker processes of one thread each (torch and the
    Yosys runs are single-threaded; two cores). The scheduler's web server (dashboard, metrics)
    takes any free port: with ``None`` it still binds 8787, which a second sweep on the machine
    would find taken."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                        dashboard_address=":0")


def run_sweep(plan, out, client, *, synth_pareto=False, progress=None, on_result=None):
    """Run ``plan``'s missing tasks on ``client``; return the merged rows (one per point).

    ``progress(done, total, what)`` is called as tasks finish, ``on_result(kind, digest)``
    after each result is stored (the tests kill a worker from it)."""
    from .pareto import merge_rows, pareto_digests

    store = ResultStore(out)
    tick = progress or (lambda *a: None)
    futures, quants = {}, {}
    for fd, fs in plan.floats.items():
        if store.get("float", fd) is None:
            futures[client.submit(ex.float_task, fs, key=f"float-{fd}", retries=1)] = \
                ("float", fd)
    for qd, (qs, fd) in plan.quants.items():
        if all(store.get("hw", pd) is not None for pd, (_, q) in plan.points.items()
               if q == qd) and not synth_pareto:
            continue  # every point of this quantization is stored: no model needed
        value = store.quant_value(qd)
        if value is None:
            fut = client.submit(ex.quant_task, qs, futures_by_key(futures, f"float-{fd}"),
                                key=f"quant-{qd}", retries=1)
            futures[fut] = ("quant", qd)
            quants[qd] = fut
        else:
            quants[qd] = value
    for pd, (hs, qd) in plan.points.items():
        if store.get("hw", pd) is None:
            # Ahead of the quantizations still queued: a point is stored as soon as it can be.
            futures[client.submit(ex.hw_task, quants[qd], hs, key=f"hw-{pd}", retries=1,
                                  priority=1)] = ("hw", pd)
    total = len(plan.floats) + len(plan.quants) + len(plan.points)
    done = total - len(futures)
    tick(done, total, "cached" if done else "submitted")
    failures = _drain(futures, store, tick, done, total, on_result)
    rows = merge_rows(plan, store)
    if synth_pareto:
        todo = [pd for pd in pareto_digests(rows) if store.get("synth", pd) is None]
        synth = {client.submit(ex.synth_task, quants[plan.points[pd][1]], plan.points[pd][0],
                               key=f"synth-{pd}", retries=1, priority=1): ("synth", pd)
                 for pd in todo}
        total += len(synth)
        failures += _drain(synth, store, tick, total - len(synth), total, on_result)
        rows = merge_rows(plan, store)
    return rows, failures


def futures_by_key(futures, key):
    """The future submitted under ``key``, or ``None`` (its result is stored already)."""
    for fut in futures:
        if fut.key == key:
            return fut
    return None


def _drain(futures, store, tick, done, total, on_result):
    """Store each future's result as it completes; return the failures' messages."""
    from distributed import as_completed

    failures = []
    for fut in as_completed(list(futures)):
        kind, d = futures[fut]
        if fut.status == "error":
            failures.append(f"{kind} {d}: {fut.exception()!r}")
        else:
            store.put(kind, d, fut.result())
            if on_result is not None:
                on_result(kind, d)
        done += 1
        tick(done, total, kind)
    return failures
