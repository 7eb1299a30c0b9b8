"""Time to accuracy on short Yelp: validation accuracy against pretraining minutes, per schedule.

Reads the curve files of ``yelp_table3.py curve`` (one per pretraining schedule: the paper's, and
each candidate pretrained by ``yelp_pretrain.py`` with other settings), puts them on one axis of
pretraining minutes, and applies the rule that picks the stored schedule. The rule was written
down before the candidates' last points were measured (recipes/README.md, "Time to accuracy"):

- each schedule is judged at its last evaluated point that ends within ``--budget-minutes`` (60)
  of pretraining;
- a candidate replaces the paper schedule only if, there, its few-label fine-tuned ensemble is at
  least as accurate on the validation file at both 100 and 1,000 labels and better on their mean,
  with the KL bound held and every unit active; of several such candidates, the best mean.

Everything here is validation accuracy; the test set is not read. Example::

    python recipes/yelp_time_to_accuracy.py      # -> recipes/figures/yelp_time_to_accuracy.{json,md,png}
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import FIGURES, PAPER_VAE, command_line, pyplot, read_json, write_json, write_markdown

REFERENCE = "paper schedule"
# name -> the curve file of yelp_table3.py curve (seed 0), yelp_pretrain.py's settings, a description
SCHEDULES = {
    REFERENCE: {"curve": FIGURES / "yelp_table3_curve_seed0.json", "settings": {"softmax": "full"},
                "description": "the paper's model and schedule (full softmax), precision=\"auto\""},
    "adaptive softmax": {"curve": FIGURES / "yelp_table3_curve_seed0_adaptive.json", "settings": {"softmax": "adaptive"},
                         "description": "the same with the adaptive softmax (softmax=\"adaptive\")"},
    "Adam, batch 64": {"curve": FIGURES / "yelp_table3_curve_seed0_adam_b64.json",
                       "settings": {"softmax": "adaptive", "optimizer": "adam", "lr": 0.001, "batch_size": 64},
                       "description": "adaptive softmax, Adam at lr 0.001, batches of 64; the plateau schedule "
                                      "unchanged"},
}
JUDGED = ("fine_tuned/100", "fine_tuned/1000")
KL_BOUND = PAPER_VAE["latent_dim"] * PAPER_VAE["gamma"] ** 2 / 2


def judged_point(points, budget_minutes):
    """The last point whose pretraining ended within the budget, or None."""
    within = [p for p in points if p.get("pretraining_minutes") is not None
              and p["pretraining_minutes"] <= budget_minutes]
    return within[-1] if within else None


def healthy(point):
    """KL above the bound and, where recorded, every unit active."""
    units = point.get("valid_active_units")
    return point["valid_kl"] >= KL_BOUND and (units is None or units == PAPER_VAE["latent_dim"])


def stored_schedule(judged):
    """The rule of the module docstring: ``judged`` maps a schedule to its judged point."""
    reference = judged.get(REFERENCE)
    if reference is None:
        return REFERENCE
    mean = lambda point: sum(point["accuracy"][key] for key in JUDGED) / len(JUDGED)
    better = [name for name, point in judged.items()
              if name != REFERENCE and point is not None and healthy(point)
              and all(key in point["accuracy"] for key in JUDGED)
              and all(point["accuracy"][key] >= reference["accuracy"][key] for key in JUDGED)
              and mean(point) > mean(reference)]
    return max(better, key=lambda name: mean(judged[name])) if better else REFERENCE


def table(curves):
    lines = ["| schedule | epoch | minutes | valid KL | " + " | ".join(keys := sorted(
        {key for points in curves.values() for p in points for key in p["accuracy"]})) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(keys)]
    for name, points in curves.items():
        for p in points:
            minutes = "—" if p.get("pretraining_minutes") is None else f"{p['pretraining_minutes']:.0f}"
            cells = [f"{p['accuracy'][key]:.1f}" if key in p["accuracy"] else "—" for key in keys]
            lines.append(f"| {name} | {p['epoch']} | {minutes} | {p['valid_kl']:.2f} | " + " | ".join(cells) + " |")
    return lines


def plot_minutes(curves, budget_minutes, path):
    figure, panels = pyplot().subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for axes, budget in zip(panels, ("100", "1000")):
        for name, points in curves.items():
            timed = [p for p in points if p.get("pretraining_minutes") is not None]
            for key in sorted({k for p in timed for k in p["accuracy"] if k.endswith("/" + budget)}):
                measured = [p for p in timed if key in p["accuracy"]]
                axes.plot([p["pretraining_minutes"] for p in measured], [p["accuracy"][key] for p in measured],
                          marker="o", label=f"{name}: {key.split('/')[0]}")
        axes.axvline(budget_minutes, color="k", linestyle=":", linewidth=1)
        axes.set_title(f"{budget} labels (short Yelp validation file)")
        axes.set(xlabel="pretraining minutes (one thread)", ylabel="validation accuracy (%)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot().close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--out-prefix", default=str(FIGURES / "yelp_time_to_accuracy"))
    args = parser.parse_args(argv)
    curves = {name: read_json(schedule["curve"], {"points": []})["points"] for name, schedule in SCHEDULES.items()}
    curves = {name: points for name, points in curves.items() if points}
    judged = {name: judged_point(points, args.budget_minutes) for name, points in curves.items()}
    stored = stored_schedule(judged)
    prefix = Path(args.out_prefix)
    write_json(prefix.with_suffix(".json"), {
        "command": command_line("yelp_time_to_accuracy.py", argv), "budget_minutes": args.budget_minutes,
        "judged_on": list(JUDGED), "kl_bound": KL_BOUND, "stored": stored,
        # what benchmarks/gpu_run.py pretrains: the stored schedule's settings and judged epoch
        "stored_pretraining": dict(SCHEDULES[stored]["settings"], max_epochs=judged[stored]["epoch"]),
        "schedules": {name: {"description": SCHEDULES[name]["description"], "curve": SCHEDULES[name]["curve"].name,
                             "judged_epoch": None if judged[name] is None else judged[name]["epoch"],
                             "points": points} for name, points in curves.items()}})
    write_markdown(prefix.with_suffix(".md"), [
        "# Time to accuracy on short Yelp (validation accuracy, %; seed 0)", "",
        f"Stored schedule by the rule (`{Path(__file__).name}`): **{stored}**, judged at the last point "
        f"within {args.budget_minutes:.0f} pretraining minutes: "
        + ", ".join(f"{name} epoch {p['epoch']}" for name, p in judged.items() if p is not None) + ".", "",
        *table(curves), "",
        "few-label rows (`frozen_lr`, `fine_tuned`) on the whole validation file; `paper` selects on its "
        "first half and is scored on the second.",
        *(f"- {name}: {SCHEDULES[name]['description']}" for name in curves)])
    plot_minutes(curves, args.budget_minutes, prefix.with_suffix(".png"))
    print(f"stored schedule: {stored}; wrote {prefix}.{{json,md,png}}")


if __name__ == "__main__":
    main()
