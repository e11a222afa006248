"""`hwgen explore` on a real Dask LocalCluster: the sweep, its folder, resume, a killed worker."""

import json
import os
import re
import signal

import pytest

from boards import explore as ex
from boards.pareto import min_energy, pareto

#: A tiny sweep: digits-mlp at two widths (min-max ranges: seconds per quantization), on a
#: board and the ASIC column, at two arrays.
PAIRS = [(2, 2), (4, 4)]
TARGETS = ["icebreaker", "asic"]
ARRAYS = [(2, 4), (4, 4)]


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    from boards.sweep import local_cluster

    with local_cluster(2) as cluster, Client(cluster) as c:
        yield c


def _plan():
    from boards.sweep import make_plan

    return make_plan(["digits-mlp"], PAIRS, TARGETS, ARRAYS, recipes=("minmax",))


def _worker_pid(client, addr):
    return client.run(os.getpid, workers=[addr])[addr]


def test_killing_a_worker_mid_sweep_loses_no_finished_point(tmp_path, client):
    """A worker is SIGKILLed while both run a quantization: the sweep completes, every result
    stored before the kill is unchanged, and a second run finds everything stored."""
    from boards.sweep import run_sweep

    plan = _plan()
    out = tmp_path / "sweep"
    before, killed = {}, []

    def on_result(kind, digest):
        if killed or kind != "float":
            return
        # The model is trained: the quantizations are running now, one per worker.
        busy = [a for a, keys in client.processing().items() if keys]
        assert busy, "no worker was running a task"
        for path in out.rglob("*.json"):
            before[path] = path.read_bytes()
        os.kill(_worker_pid(client, busy[0]), signal.SIGKILL)
        killed.append(busy[0])

    rows, failures = run_sweep(plan, out, client, on_result=on_result)
    assert killed and before
    assert failures == []
    assert len(rows) == len(PAIRS) * len(TARGETS) * len(ARRAYS) == len(plan.points)
    for path, text in before.items():
        assert path.read_bytes() == text, f"{path.name} changed"
    for pd in plan.points:
        assert (out / "points" / f"{pd}.json").exists()
    for qd in plan.quants:
        assert (out / "quant" / qd / "model.json").exists()
    # Resumed: nothing is left to run.
    ticks = []
    rows2, _ = run_sweep(plan, out, client, progress=lambda *a: ticks.append(a))
    assert ticks[0][0] == ticks[0][1] == len(plan.floats) + len(plan.quants) + len(plan.points)
    assert sorted(r["digest"] for r in rows2) == sorted(r["digest"] for r in rows)


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path, client):
    from boards.sweep import run_sweep

    plan = _plan()

    class Stop(Exception):
        pass

    def stop(kind, digest):
        if kind == "hw":
            raise Stop  # as a Ctrl-C in the client would, right after a point is stored

    with pytest.raises(Stop):
        run_sweep(plan, tmp_path, client, on_result=stop)
    stored = len(list((tmp_path / "points").glob("*.json")))
    quants = len(list((tmp_path / "quant").glob("*.json")))
    assert 1 <= stored < len(plan.points) and quants >= 1
    ticks = []
    rows, failures = run_sweep(plan, tmp_path, client, progress=lambda *a: ticks.append(a))
    assert failures == [] and len(rows) == len(plan.points)
    first_done, total, _ = ticks[0]
    # Only what the folder lacks runs: the missing points and quantizations.
    assert total - first_done == (len(plan.points) - stored) + (len(plan.quants) - quants)


def test_sweep_rows_and_results_folder(tmp_path, client):
    from boards.pareto import write_results
    from boards.sweep import run_sweep

    rows, failures = run_sweep(_plan(), tmp_path, client)
    assert failures == []
    by = {(r["wbits"], r["target"], tuple(r["array"])): r for r in rows}
    board = by[(4, "icebreaker", (2, 4))]
    for key in ("lut", "bram", "dsp", "fits", "fmax_mhz", "cycles", "latency_us",
                "energy_45nm_uj", "energy_fpga_uj", "quant_accuracy", "val_accuracy",
                "float_accuracy", "float_val_accuracy"):
        assert board[key] is not None, key
    asic = by[(4, "asic", (2, 4))]
    assert asic["lut"] is None and asic["energy_45nm_uj"] > 0
    # One overlay, one schedule: the ASIC column's energy and cycles are the board's (the
    # estimate rounds to 0.1 pJ).
    assert asic["cycles"] == board["cycles"]
    assert asic["energy_45nm_uj"] == pytest.approx(board["energy_45nm_uj"], rel=1e-4)
    moons = write_results(rows, tmp_path)
    for name in ("points.json", "points.csv", "pareto_energy.png", "pareto_lut.png",
                 "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(json.loads((tmp_path / "points.json").read_text())) == len(rows)
    report = (tmp_path / "report.md").read_text()
    assert "Minimum-energy bit width within 0.5 points of float" in report
    assert "digits-mlp" in moons


def _row(w, acc, energy, lut=100, **kw):
    return {"model": "m", "wbits": w, "abits": w, "array": [2, 2], "target": "b",
            "digest": f"d{w}", "fits": True, "quant_accuracy": acc, "val_accuracy": acc,
            "float_accuracy": 0.98, "float_val_accuracy": 0.98, "energy_45nm_uj": energy,
            "lut": lut, **kw}


def test_pareto_front_and_min_energy():
    rows = [_row(8, 0.98, 1.0), _row(4, 0.978, 0.5), _row(3, 0.97, 0.6), _row(2, 0.90, 0.3),
            _row(6, 0.99, 2.0, fits=False), _row(5, 0.99, 0.1, error="does not fit")]
    assert [r["wbits"] for r in pareto(rows, "energy_45nm_uj")] == [2, 4, 8]
    m = min_energy(rows)["m"]
    assert m["best"]["wbits"] == 4  # 97.8 is within 0.5 points of 98.0; 97.0 is not
    assert m["w8a8"]["wbits"] == 8 and m["saving"] == pytest.approx(2.0)


def test_digests_are_stable_and_distinct():
    q = ex.quant_spec("digits-cnn", 4, 4)
    assert ex.digest(q) == ex.digest(ex.quant_spec("digits-cnn", 4, 4))
    assert ex.digest(q) != ex.digest(ex.quant_spec("digits-cnn", 4, 2))
    assert ex.digest(ex.hw_spec(q, "icebreaker")) != ex.digest(ex.hw_spec(q, "asic"))
    assert ex.digest(ex.hw_spec(q, "icebreaker", (2, 4))) != ex.digest(
        ex.hw_spec(q, "icebreaker"))


def test_a_binary_point_is_trained_and_scored_on_unseen_validation_data(monkeypatch):
    """W1A1 in a sweep: QAT (PTQ collapses at 1 bit) on the fit split only, so the validation
    accuracy the iso-accuracy front compares is on images the training never saw; a point of
    2+ bits keeps the digest it had before binary points existed (no ``qat`` key)."""
    q = ex.quant_spec("digits-mlp", 1, 1)
    assert q["qat"] == ex.BINARY_QAT_EPOCHS and "qat" not in ex.quant_spec("digits-mlp", 2, 2)
    assert "qat" in ex.quant_spec("digits-mlp", 4, 4, layer_bits={"1": (1, 4)})
    monkeypatch.setitem(q, "qat", 3)
    figures, qm = ex.quant_task(q)
    assert "error" not in figures, figures
    assert figures["chosen"] == "mse+qat" and qm.meta["recipe"]["qat_data"] == "fit split"
    assert figures["val_accuracy"] > 0.5 and figures["quant_accuracy"] > 0.5, figures
    assert len(qm.meta["qat_candidates"]) == 3  # the learning rates, by 4-fold choice
    from quantflow import qatsearch
    assert q["qat_choice"] == f"{qatsearch.FOLDS}-fold"
    assert all(r["folds"] == qatsearch.FOLDS for r in qm.meta["qat_candidates"])


@pytest.mark.parametrize("argv, message", [
    (["--wbits", "2,4"], r"--wbits and --abits go together$"),
    (["--recipe", "nope"], r"Recipe must be one of .*, not 'nope'$"),
    (["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1"],
     r"no Dask scheduler at tcp://127\.0\.0\.1:9: "),
])
def test_explore_user_errors(tmp_path, capsys, argv, message):
    from hwflow.cli import main

    assert main(["explore", "--out", str(tmp_path / "o")] + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, err), err


def test_explore_argument_types(capsys):
    from hwflow.cli import main

    with pytest.raises(SystemExit):
        main(["explore", "--out", "o", "--board", "nope"])
    assert "Board must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explore", "--out", "o", "--bits", "0"])
    assert "'0' is not a bit width in 1..8" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.board
def test_synth_pareto_builds_the_front_on_workers(tmp_path, client):
    """--synth-pareto on the ASIC column: each Pareto point's generic synthesis runs on a
    worker and its gates land in the row."""
    from boards.pareto import pareto_digests
    from boards.sweep import make_plan, run_sweep

    plan = make_plan(["digits-mlp"], PAIRS, ["asic"], [(1, 4)], recipes=("minmax",))
    rows, failures = run_sweep(plan, tmp_path, client, synth_pareto=True)
    assert failures == []
    front = set(pareto_digests(rows))
    assert front
    for r in rows:
        assert ("synth_gates" in r) == (r["digest"] in front)
        if r["digest"] in front:
            assert r["synth_gates"] > 0 and r["synth_transistors"] > 0


def test_cli_shows_progress_within_two_seconds(tmp_path):
    """``hwgen explore`` on a terminal (a pty): the progress bar is up before Dask, torch and
    the cluster have started, and the sweep's folder is complete at the end."""
    import pty
    import select
    import sys
    import time
    from pathlib import Path

    hwgen = Path(sys.executable).with_name("hwgen")
    argv = [str(hwgen), "explore", "--model", "digits-mlp", "--bits", "4", "--recipe",
            "minmax", "--board", "asic", "--arrays", "2x4", "--out", str(tmp_path / "o")]
    start = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # the child: only exec (or exit) here
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    first, text = None, b""
    while time.monotonic() - start < 120:
        ready, _, _ = select.select([fd], [], [], 5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        text += chunk
        if first is None and b"explore" in text:
            first = time.monotonic() - start
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, text.decode(errors="replace")[-2000:]
    assert first is not None and first < 2.0, first
    assert b"1 points in" in text
    for name in ("points.json", "points.csv", "pareto_energy.png", "report.md"):
        assert (tmp_path / "o" / name).exists(), name
