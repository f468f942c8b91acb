"""Cell expansion per figure (relative to the stage count), the registry, and variants."""

from __future__ import annotations

import pytest

from figures.cells import base_spec, figure_root, links_key, rel_dir, variant_name
from figures.measured import Axes
from figures.registry import UnknownFigureError, figure_names, get_figure

PAPER_ORDER = [
    "fig4", "fig5", "fig8", "fig14", "fig15", "fig16", "fig17", "fig18", "fig19", "fig20", "sim-compare",
    "nic-crash", "dynamic", "breakdown",
]
BASE = base_spec()


def test_names_in_paper_order_and_aliases() -> None:
    assert figure_names() == PAPER_ORDER
    assert get_figure("15") is get_figure("fig15")
    assert get_figure("sim_compare").name == "sim-compare"


def test_unknown_figure_lists_valid_names() -> None:
    with pytest.raises(UnknownFigureError, match="fig15.*sim-compare"):
        get_figure("fig99")


def test_fig15_full_cells() -> None:
    cells = get_figure("fig15").cells(BASE)
    faulty = [c for c in cells if not c.healthy]
    assert len(faulty) == 5 * 6
    assert {c.method for c in faulty} == {"1f1b", "zb", "pipemorph-cpu", "pipemorph", "pipemorph+"}
    assert sorted({c.delay_s for c in faulty}) == [0.02, 0.04, 0.06, 0.08, 0.10, 0.12]
    assert {links_key(c.links) for c in faulty} == {"2_3"}
    assert all(c.figure == "fig15" and c.fault_at == 2 and c.iterations == 8 for c in faulty)
    assert all(c.fault_at + 1 + 5 <= c.iterations for c in faulty)  # 5 adapted iterations
    assert all(c.microbatches == 12 and c.preset == "cpu-small" and c.stages == 4 for c in cells)
    # The 0 ms point is fig20's healthy 1F1B and ZB runs and the artifact's All-CPU (1
    # delegate), the very cells fig20 declares.
    healthy = [c for c in cells if c.healthy]
    assert {(c.figure, c.method, c.delegates) for c in healthy} == {
        ("fig20", "1f1b", 0), ("fig20", "zb", 0), ("fig20-k1", "all-cpu", 1)}
    fig20 = get_figure("fig20").cells(BASE)
    assert all(c in fig20 for c in healthy)


def test_quick_is_a_subset_of_the_full_cells() -> None:
    quick = get_figure("fig15").cells(BASE, quick=True)
    assert len(quick) == 3 + 5 * 2
    assert sorted({c.delay_s for c in quick if not c.healthy}) == [0.06, 0.12]
    assert all(c in get_figure("fig15").cells(BASE) for c in quick)


def test_link_sets_follow_the_stage_count() -> None:
    s8 = base_spec(stages=8)
    assert {links_key(c.links) for c in get_figure("fig15").cells(s8) if not c.healthy} == {"6_7"}
    assert {links_key(c.links) for c in get_figure("fig16").cells(s8)} == {"0_1", "6_7"}
    assert {links_key(c.links) for c in get_figure("fig17").cells(s8)} == {
        "0_1,1_2", "0_1,2_3", "0_1,6_7", "0_1,3_4,6_7"}
    assert {links_key(c.links) for c in get_figure("fig14").cells(s8)} == {"6_7"}
    assert all(c.stages == 8 for c in get_figure("fig16").cells(s8))


def test_fig16_fig17_fig20_cells() -> None:
    fig16 = get_figure("fig16").cells(BASE)
    assert len(fig16) == 20
    assert {links_key(c.links) for c in fig16} == {"0_1", "2_3"}
    assert {c.delay_s for c in fig16} == {0.06, 0.12}
    fig17 = get_figure("fig17").cells(BASE)
    assert len(fig17) == 10
    assert {links_key(c.links) for c in fig17} == {"0_1,1_2", "0_1,2_3"}
    assert {c.delay_s for c in fig17} == {0.06}
    fig20 = get_figure("fig20").cells(BASE)
    # All-CPU twice: the artifact's 1 delegate, ours automatic (0); their own folders
    assert [(c.method, c.delegates, c.figure) for c in fig20] == [
        ("1f1b", 0, "fig20"), ("zb", 0, "fig20"), ("all-cpu", 1, "fig20-k1"), ("all-cpu", 0, "fig20")]
    assert all(c.healthy for c in fig20)


def test_cross_figure_cells() -> None:
    fig14 = get_figure("fig14").cells(BASE)
    assert [c.method for c in fig14] == ["zb", "pipemorph-cpu", "pipemorph"]
    assert all(c in get_figure("fig16").cells(BASE) for c in fig14)
    fig18 = get_figure("fig18").cells(BASE)
    assert len(fig18) == 15
    assert all(c in get_figure("fig15").cells(BASE) for c in fig18)


def test_axes_replace_the_sweep() -> None:
    fig15 = get_figure("fig15")
    cells = fig15.cells(BASE, axes=Axes(link_sets=(((1, 2),),), delays_s=(0.2,)))
    assert {(links_key(c.links), c.delay_s) for c in cells} == {("1_2", 0.2)}
    assert len(cells) == 5  # no healthy cells: neither 0 nor 'none' was asked for
    with_zero = fig15.cells(BASE, axes=Axes(methods=("zb", "all-cpu"), delays_s=(0.0, 0.06)))
    # a delay of 0 asks for every method's no-fault cell (fig20's folder)
    assert {(c.method, c.healthy) for c in with_zero} == {
        ("zb", True), ("zb", False), ("all-cpu", True), ("all-cpu", False)}
    assert {c.figure for c in with_zero if c.healthy} == {"fig20", "fig20-k1"}  # all-cpu: 1 delegate


def test_variants_keep_specs_apart(tmp_path) -> None:
    assert variant_name(BASE) == "" and figure_root(tmp_path, BASE) == tmp_path
    assert variant_name(base_spec(preset="tiny")) == "tiny"  # tiny's own micro-batch default
    assert variant_name(base_spec(preset="tiny", microbatches=12)) == "tiny-mb12"
    assert variant_name(base_spec(stages=8, iterations=12, fault_at=4)) == "s8-it12-at4"
    assert variant_name(base_spec(device="cuda", launcher="torchrun")) == "cuda-torchrun"
    cell = get_figure("fig15").cells(base_spec(preset="tiny"))[3]
    assert str(rel_dir(cell)) == f"{cell.method}/2_3/{cell.delay_s:g}"


def test_simulated_figures_have_no_cells() -> None:
    for name in ("fig4", "fig5", "fig8", "sim-compare"):
        fig = get_figure(name)
        assert fig.kind == "simulated" and fig.cells(BASE) == []


def test_estimates_grow_with_the_work() -> None:
    fig15 = get_figure("fig15")
    assert 0 < fig15.estimate_seconds(BASE, quick=True) < fig15.estimate_seconds(BASE, quick=False)
