"""Every hostile case of :mod:`hostile_cases` gives one clear line and exit status 2, or runs
correctly: no traceback, no exit 0 on bad input, no litter, no lost user file (issue 12).

In-process (``hwflow.cli.main``) except the cases that need a real process (a closed pipe,
``sys.exit`` in user code); ``bench/hostile.py`` runs them all as processes for the README's
table."""

import pytest
from flowkit import trained

import hostile_cases as hc


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    trained("digits-mlp")
    return hc.prepare(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("case", hc.CASES, ids=[c.name for c in hc.CASES])
def test_hostile_case(case, prepared, tmp_path):
    q, zoo = prepared
    ctx = hc.Context(tmp=tmp_path, q_src=q, zoo_src=zoo,
                     env={"HWGEN_CACHE": str(zoo), "HWGEN_BUILD_CACHE": str(tmp_path / "b")})
    outcome = hc.run_case(case, ctx)
    assert outcome.verdict == "ok", f"{outcome.verdict} (exit {outcome.code}): {outcome.detail}"


def test_litter_finds_what_a_killed_run_leaves(tmp_path):
    """The harness's litter check can fail: it sees every name a killed run would leave."""
    for name in (".q.tmp-123-abc", ".q.old-123-abc", "hwgen-inputs-1-x", "hwgen-sim-1-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "q").mkdir()
    assert sorted(p.rsplit("/", 1)[1] for p in hc.litter(tmp_path)) == [
        ".q.old-123-abc", ".q.tmp-123-abc", "hwgen-inputs-1-x", "hwgen-sim-1-x"]


@pytest.mark.parametrize(("code", "err", "expect", "verdict"), [
    (1, "Traceback (most recent call last):\n  x\nValueError: y\n", hc.ERROR, "traceback"),
    (0, "", hc.ERROR, "silently wrong"),
    (2, "hwgen quantize: error: a\nhwgen quantize: error: b\n", hc.ERROR, "unclear"),
    (1, "hwgen quantize: error: bad thing\n", hc.ERROR, "unclear"),
    (2, "hwgen quantize: error: \x1b[31mbad thing\x1b[0m\n", hc.ERROR, "unclear"),
    (2, "hwgen quantize: error: something else\n", hc.ERROR, "unclear"),
    (2, "hwgen quantize: error: bad thing\n", hc.ERROR, "ok"),
    (2, "", hc.OK, "unclear"),
])
def test_judge(code, err, expect, verdict):
    case = hc.Case("quantize/x", "c", setup=None, expect=expect, message="bad thing")
    assert hc.judge(case, code, "", err, [])[0] == verdict
