"""Cell expansion per figure and the registry."""

from __future__ import annotations

import pytest

from figures.cells import links_key
from figures.registry import UnknownFigureError, figure_names, get_figure
from pmctl.launcher import trace_text

PAPER_ORDER = [
    "fig4", "fig5", "fig8", "fig14", "fig15", "fig16", "fig17", "fig18", "fig19", "fig20", "sim-compare",
]


def test_names_in_paper_order_and_aliases() -> None:
    assert figure_names() == PAPER_ORDER
    assert get_figure("15") is get_figure("fig15")
    assert get_figure("sim_compare").name == "sim-compare"


def test_unknown_figure_lists_valid_names() -> None:
    with pytest.raises(UnknownFigureError, match="fig15.*sim-compare"):
        get_figure("fig99")


def test_fig15_full_cells() -> None:
    cells = get_figure("fig15").cells(quick=False)
    faulty = [c for c in cells if not c.healthy]
    assert len(faulty) == 4 * 6
    assert {c.method for c in faulty} == {"1f1b", "zb", "pipemorph-cpu", "pipemorph"}
    assert sorted({c.delay_s for c in faulty}) == [0.02, 0.04, 0.06, 0.08, 0.10, 0.12]
    assert {links_key(c.links) for c in faulty} == {"2_3"}
    assert all(c.figure == "fig15" and c.fault_at == 7 and c.iterations == 15 for c in faulty)
    assert all(c.microbatches == 12 and c.preset == "cpu-small" for c in cells)
    # The 0 ms point is fig20's healthy 1F1B and ZB runs, the very cells fig20 declares.
    healthy = [c for c in cells if c.healthy]
    assert {(c.figure, c.method) for c in healthy} == {("fig20", "1f1b"), ("fig20", "zb")}
    fig20 = get_figure("fig20").cells(quick=False)
    assert all(c in fig20 for c in healthy)


def test_fig15_quick_cells() -> None:
    cells = get_figure("fig15").cells(quick=True)
    assert len(cells) == 2 + 4 * 2
    assert sorted({c.delay_s for c in cells if not c.healthy}) == [0.06, 0.12]
    assert all(c.iterations == 10 and c.fault_at == 4 for c in cells)
    assert all(c.fault_at < c.iterations - 5 for c in cells)  # 5 post-fault iterations to average


def test_fig16_fig17_fig20_cells() -> None:
    fig16 = get_figure("fig16").cells(quick=False)
    assert len(fig16) == 16
    assert {links_key(c.links) for c in fig16} == {"0_1", "2_3"}
    assert {c.delay_s for c in fig16} == {0.06, 0.12}
    fig17 = get_figure("fig17").cells(quick=False)
    assert len(fig17) == 8
    assert {links_key(c.links) for c in fig17} == {"0_1,1_2", "0_1,2_3"}
    assert {c.delay_s for c in fig17} == {0.06}
    fig20 = get_figure("fig20").cells(quick=False)
    assert [c.method for c in fig20] == ["1f1b", "zb", "all-cpu"]
    assert all(c.healthy and trace_text(c) == "" for c in fig20)


def test_cross_figure_cells() -> None:
    fig14 = get_figure("fig14").cells(quick=False)
    assert [c.method for c in fig14] == ["zb", "pipemorph-cpu", "pipemorph"]
    assert all(c in get_figure("fig16").cells(quick=False) for c in fig14)
    fig18 = get_figure("fig18").cells(quick=False)
    assert len(fig18) == 12
    assert all(c in get_figure("fig15").cells(quick=False) for c in fig18)
    assert trace_text(fig18[0]) == "7;2_3;0.02\n"


def test_simulated_figures_have_no_cells() -> None:
    for name in ("fig4", "fig5", "fig8", "sim-compare"):
        fig = get_figure(name)
        assert fig.kind == "simulated" and fig.cells(quick=False) == []


def test_estimates_grow_with_the_work() -> None:
    fig15 = get_figure("fig15")
    assert 0 < fig15.estimate_seconds(quick=True) < fig15.estimate_seconds(quick=False)
