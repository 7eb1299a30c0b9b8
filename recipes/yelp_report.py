"""The report of ``yelp_table3.py``: the combined table (Markdown beside the JSON), the accuracy
plot against labels with the paper's BN-VAE line, and the validation curve against pretraining."""

from __future__ import annotations

import json

import numpy as np

BUDGETS = (100, 500, 1000, 2000, 10000)
# Zhu et al. (2020), Table 3, at BUDGETS: references beside our rows, never inputs.
PAPER_TABLE3 = {"BN-VAE (paper)": [88.8, 91.6, 92.5, 94.1, 95.4], "AE+FB (paper)": [87.6, 90.2, 92.0, 93.4, 94.9],
                "VAE (paper)": [66.1, 82.6, 88.4, 89.6, 94.5], "AE (paper)": [81.1, 86.2, 90.3, 89.4, 94.1]}


def write_report(combined, prefix):
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps(combined, indent=2) + "\n", encoding="utf-8")
    budgets = sorted({int(b) for values in combined["rows"].values() for b in values})
    lines = ["# Short Yelp test accuracy (%), paper and few-label protocols", "",
             f"Combined by `{combined['command']}` from:", ""]
    lines += [f"- seed {s['seed']}: " + ", ".join(f"`{c}`" for c in s["commands"]) +
              f" ({s['vae']['epochs']} pretraining epochs, "
              f"validation KL {s['vae']['valid_kl_best_epoch']:.2f} against the bound "
              f"{s['vae']['kl_bound']:.2f}, {s['vae']['valid_active_units']} active units)"
              for s in combined["seeds"]]
    lines += ["", "| protocol / method | " + " | ".join(f"{b:,}" for b in budgets) + " |",
              "|---|" + "---:|" * len(budgets)]
    for row, values in combined["rows"].items():
        cells = []
        for budget in budgets:
            accuracies = values.get(str(budget), [])
            cells.append("—" if not accuracies else f"{np.mean(accuracies):.1f}" if len(accuracies) == 1
                         else f"{np.mean(accuracies):.1f} ± {np.std(accuracies, ddof=1):.1f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    for name, values in PAPER_TABLE3.items():
        paper = dict(zip(BUDGETS, values))
        if set(budgets) <= set(paper):
            lines.append(f"| {name} | " + " | ".join(f"{paper[b]:.1f}" for b in budgets) + " |")
    lines += ["", "Cells: mean ± standard deviation over seeds (one seed: the value). Protocols: "
              "recipes/yelp_table3.py's docstring and the JSON's `protocol`."]
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_rows(combined["rows"], budgets, prefix.with_suffix(".png"))
    print("\n".join(lines))


def plot_rows(rows, budgets, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.6))
    for row, values in rows.items():
        present = [b for b in budgets if str(b) in values]
        axes.errorbar(present, [np.mean(values[str(b)]) for b in present], marker="o", capsize=3, label=row,
                      yerr=[np.std(values[str(b)], ddof=1) if len(values[str(b)]) > 1 else 0 for b in present])
    paper = dict(zip(BUDGETS, PAPER_TABLE3["BN-VAE (paper)"]))
    if set(budgets) <= set(paper):
        axes.plot(budgets, [paper[b] for b in budgets], "k--", label="BN-VAE (paper, Table 3)")
    axes.set_xscale("log")
    save_plot(figure, axes, path, "labeled examples", "test accuracy (%)")


def plot_curve(curve, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve["points"]
    if not points:
        return
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for key in sorted({key for p in points for key in p["accuracy"]}):   # budgets may differ by epoch
        measured = [p for p in points if key in p["accuracy"]]
        axes.plot([p["epoch"] for p in measured], [p["accuracy"][key] for p in measured], marker="o", label=key)
    axes.set_title("Few-label classifiers against pretraining (short Yelp validation file)")
    save_plot(figure, axes, path, "pretraining epochs over the pool", "validation accuracy (%)")


def save_plot(figure, axes, path, xlabel, ylabel):
    import matplotlib.pyplot as plt

    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
