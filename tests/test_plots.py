"""The plots draw in the book's style without touching the reader's global matplotlib settings."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lossdecay_lib import plots  # noqa: E402
from lossdecay_lib import schedules as S  # noqa: E402


def test_a_plot_is_styled_and_leaves_global_rcparams_alone():
    before = dict(matplotlib.rcParams)
    fig = plots.plot_schedules({"weights": {"linear": S.linear_decay()}, "lr": {"poly": S.poly()},
                                "code": {"code": S.authors_code_weight()}}, epochs=10, steps_per_epoch=2)
    assert dict(matplotlib.rcParams) == before
    assert fig.dpi == plots.STYLE["figure.dpi"] != before["figure.dpi"]
    ax = fig.axes[0]
    assert not ax.spines["top"].get_visible() and ax.spines["left"].get_visible()
    assert ax.lines[0].get_color() == plots.PALETTE[0]
    assert [a.get_visible() for a in fig.axes] == [True, True, True, False]  # 3 panels on a 2x2 grid
    plt.close(fig)


def test_titles_and_picture_grids():
    fig = plots.plot_curves(np.arange(5), {"a": np.arange(5.0)}, "x", "y", "one panel")
    assert fig._suptitle is None and fig.axes[0].get_title() == "one panel"
    plt.close(fig)
    images = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    fig = plots.plot_pix2pix_grid(images, {"a setting": images}, images, title="grid")
    assert fig._suptitle.get_text() == "grid" and fig._suptitle.get_fontsize() == 10
    assert len(fig.axes) == 6 and [a.get_title() for a in fig.axes[:3]] == ["input", "a setting", "ground truth"]
    assert not any(side.get_visible() for side in fig.axes[0].spines.values())
    plt.close(fig)


def test_interactive_mode_turned_on_while_plotting_stays_on():
    # IPython's inline backend loads at a notebook's first figure, inside the style context, and turns
    # interactive mode on; were it undone on leaving the context, later figures would not be shown.
    def first_figure():
        matplotlib.interactive(True)  # what loading the inline backend does
        return plt.figure()

    was = matplotlib.is_interactive()
    matplotlib.interactive(False)
    try:
        plt.close(plots._styled(first_figure)())
        assert matplotlib.is_interactive()
    finally:
        matplotlib.interactive(was)
