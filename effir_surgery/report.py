"""Human-readable views of an ``ImportanceReport``: a markdown table and a per-layer plot."""

from __future__ import annotations

from pathlib import Path

from .analyze import ImportanceReport


def importance_table(report: ImportanceReport) -> str:
    """Markdown table: per layer, attention and MLP importance (1 - cos) and their rank among their kind
    (rank 1 = least important, removed first)."""

    def ranks(values: list[float]) -> list[int]:
        order = sorted(range(len(values)), key=lambda i: (values[i], i))
        out = [0] * len(values)
        for rank, i in enumerate(order, start=1):
            out[i] = rank
        return out

    att_rank, mlp_rank = ranks(report.attention), ranks(report.mlp)
    lines = [
        f"Importance (1 - cos of the residual stream before/after each sublayer), {report.model}, "
        f"{report.tokens:,} tokens from {report.calibration}.",
        "Rank 1 = least important (removed first).",
        "",
        "| layer | attention | rank | MLP | rank | MLP / attention |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (a, m) in enumerate(zip(report.attention, report.mlp, strict=True)):
        ratio = f"{m / a:.2f}" if a > 0 else "-"
        lines.append(f"| {i} | {a:.4f} | {att_rank[i]} | {m:.4f} | {mlp_rank[i]} | {ratio} |")
    mean_a = sum(report.attention) / len(report.attention)
    mean_m = sum(report.mlp) / len(report.mlp)
    lines.append(f"| mean | {mean_a:.4f} | | {mean_m:.4f} | | {mean_m / mean_a:.2f} |" if mean_a else "")
    if report.probe:
        p = report.probe
        lines += [
            "",
            f"Drop-one probe ({p.metric}; intact model {p.baseline:.4f}; {p.description}):",
            "",
            "| layer | without attention | without MLP |",
            "|---:|---:|---:|",
        ]
        for i, (a, m) in enumerate(zip(p.attention, p.mlp, strict=True)):
            fa = "-" if a is None else f"{a:.4f}"
            fm = "-" if m is None else f"{m:.4f}"
            lines.append(f"| {i} | {fa} | {fm} |")
    return "\n".join(lines)


def plot_importance(report: ImportanceReport, path: str | Path) -> None:
    """Bar chart of attention and MLP importance side by side per layer (log scale: the two kinds differ by
    orders of magnitude in the first and last layers), plus the drop-one probe when present. The title names the
    model and the calibration set, wrapped to the figure's width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.mlp)
    rows = 2 if report.probe else 1
    width_inches = max(8, n * 0.35)
    fig, axes = plt.subplots(rows, 1, figsize=(width_inches, 4 * rows), squeeze=False)
    ax = axes[0][0]
    x = range(n)
    width = 0.4
    ax.bar(
        [i - width / 2 for i in x], [max(v, 1e-6) for v in report.attention], width, label="attention", color="#4C72B0"
    )
    ax.bar([i + width / 2 for i in x], [max(v, 1e-6) for v in report.mlp], width, label="MLP", color="#DD8452")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("importance: 1 - cos(x_in, x_out)")
    ax.set_title(
        _wrap(f"Sublayer importance, {report.model}", width_inches)
        + "\n"
        + _wrap(f"calibration: {report.calibration} ({report.tokens:,} tokens)", width_inches),
        fontsize=11,
    )
    ax.set_xticks(list(x))
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    if report.probe:
        p = report.probe
        ax2 = axes[1][0]
        drop_a = [p.baseline - v if v is not None else 0 for v in p.attention]
        drop_m = [p.baseline - v if v is not None else 0 for v in p.mlp]
        ax2.bar([i - width / 2 for i in x], drop_a, width, label="attention removed", color="#4C72B0")
        ax2.bar([i + width / 2 for i in x], drop_m, width, label="MLP removed", color="#DD8452")
        ax2.set_xlabel("layer")
        ax2.set_ylabel(f"{p.metric} lost")
        ax2.set_title(f"Drop-one probe: {p.metric} lost when one sublayer is removed (intact: {p.baseline:.3f})")
        ax2.set_xticks(list(x))
        ax2.axhline(0, color="black", linewidth=0.8)
        ax2.legend()
        ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _wrap(text: str, width_inches: float) -> str:
    """``text`` broken at spaces into lines that fit a title ``width_inches`` wide at 11 pt (about 11 characters
    per inch); a word longer than a line (a long path) is split."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width=int(width_inches * 11), break_long_words=True)) or text
