"""What a study leaves behind: a plot of its trials and its results as JSON."""

from __future__ import annotations

import json
import os
import warnings

from ._optuna import INSTALL_HINT, import_optuna

GAMMA, LATENT_DIM = "vae__gamma", "vae__latent_dim"


def plot_trials(study, path):
    """Save a PNG of the trials: accuracy against ``gamma``, one color and marker per
    ``latent_dim`` (complete trials filled, pruned ones hollow at their last report)."""
    optuna = import_optuna()
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"plot_trials needs matplotlib: {INSTALL_HINT}") from error
    states = optuna.trial.TrialState
    trials = [t for t in study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))
              if GAMMA in t.params and LATENT_DIM in t.params]
    if not trials:
        raise ValueError("The study holds no complete or pruned trial with vae__gamma and "
                         "vae__latent_dim to plot.")
    figure = Figure(figsize=(9, 4), constrained_layout=True)
    FigureCanvasAgg(figure)
    by_gamma, by_latent = figure.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    latent_dims = sorted({t.params[LATENT_DIM] for t in trials})
    markers = "osD^v<>ph*"
    colors = [f"C{i % 10}" for i in range(len(latent_dims))]
    for index, latent_dim in enumerate(latent_dims):
        for state, filled in ((states.COMPLETE, True), (states.PRUNED, False)):
            group = [t for t in trials if t.params[LATENT_DIM] == latent_dim and t.state == state
                     and (t.value is not None or t.intermediate_values)]
            values = [t.value if t.value is not None else
                      t.intermediate_values[max(t.intermediate_values)] for t in group]
            if not group:
                continue
            style = dict(marker=markers[index % len(markers)], s=45,
                         facecolors=colors[index] if filled else "none", edgecolors=colors[index])
            label = f"latent_dim {latent_dim}" + ("" if filled else " (pruned)")
            by_gamma.scatter([t.params[GAMMA] for t in group], values, label=label, **style)
            by_latent.scatter([index] * len(group), values, **style)
    best = study.best_trial if any(t.state == states.COMPLETE for t in trials) else None
    if best is not None:
        by_gamma.scatter([best.params[GAMMA]], [best.value], s=180, facecolors="none",
                         edgecolors="black", linewidths=1.5, label=f"best (trial {best.number})")
    by_gamma.set_xlabel("gamma (scale of the batch norm on the posterior means)")
    by_gamma.set_ylabel("cross-validated accuracy (labeled rows)")
    by_gamma.legend(fontsize=8)
    by_gamma.grid(alpha=0.3)
    by_latent.set_xticks(range(len(latent_dims)), [str(d) for d in latent_dims])
    by_latent.set_xlabel("latent_dim")
    by_latent.grid(alpha=0.3)
    figure.suptitle(f"Optuna study {study.study_name!r}: {len(trials)} trials")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def save_results(study, out_dir):
    """Write ``best_params.json``, ``trials.json`` and ``trials.png`` to ``out_dir``;
    return the paths written."""
    optuna = import_optuna()
    states = optuna.trial.TrialState
    os.makedirs(out_dir, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (states.COMPLETE, states.PRUNED, states.FAIL, states.RUNNING)}
    if counts["complete"] == 0:
        raise ValueError(f"Study {study.study_name!r} has no complete trial yet; nothing to save.")
    best = study.best_trial
    summary = {"study_name": study.study_name, "best_params": best.params,
               "best_value": best.value, "best_trial": best.number,
               "best_cv_accuracy_std": best.user_attrs.get("cv_accuracy_std"),
               "fixed_params": study.user_attrs.get("fixed_params", {}),
               "random_state": study.user_attrs.get("random_state"), "n_trials": counts,
               "objective": "accuracy of the head under repeated stratified cross-validation "
                            "on the labeled training rows"}
    paths = {"best_params": os.path.join(out_dir, "best_params.json"),
             "trials": os.path.join(out_dir, "trials.json"),
             "plot": os.path.join(out_dir, "trials.png")}
    with open(paths["best_params"], "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
             "seconds": t.duration.total_seconds() if t.duration else None,
             "user_attrs": t.user_attrs} for t in trials]
    with open(paths["trials"], "w", encoding="utf-8") as handle:
        json.dump(rows, handle, indent=2, default=repr)
    try:
        plot_trials(study, paths["plot"])
    except ValueError as error:   # a custom space without gamma or latent_dim
        warnings.warn(f"No trial plot: {error}", UserWarning)
        del paths["plot"]
    return paths
