"""Optuna tuning of ``gamma`` and ``latent_dim`` (and optionally the head) per data set.

One call, :func:`tune`, runs an Optuna study whose objective is the accuracy of
the head under repeated stratified cross-validation **on the labeled rows only**:

* the VAE is pretrained, without labels, on every text given (labeled and
  unlabeled rows plus ``unlabeled``), exactly as :class:`BNVAEClassifier` does;
* the head (``LogisticRegression`` by default) is then scored by
  ``RepeatedStratifiedKFold`` on the posterior means of the labeled rows.

No test set enters the study: pass only training texts. Cross-validation on the
labeled rows is used instead of a fixed validation split because with 100 labels
a single split of 20 texts moves by 5 points per text; repeating the folds
averages that noise away at the cost of a few extra fits of a linear head.

A pretrained VAE depends only on its parameters, its seed and the pretraining
texts, so trials that share them share one VAE: it is cached in memory and, with
``model_dir``, on disk (``BNVAE.save``), keyed by a hash of all three. After each
pretraining epoch the cross-validated head accuracy at the current weights is
reported to the trial, so a pruner (``MedianPruner`` by default) stops hopeless
trials early.

Storage: None keeps the study in memory; an RDB URL (``sqlite:///study.db``,
``postgresql+psycopg2://user@host/db``) keeps it in a database that resumes where
it stopped and that several processes or machines can work on at once. RDB
studies run a heartbeat: a trial whose worker was killed is marked failed when a
worker next starts a trial, and its parameters are tried again. A rerun on the
same host fails the trials of its dead worker processes at once, without waiting
for the heartbeat's grace period, and a resumed study's sampler is seeded from
the number of trials it holds, so it never replays the parameters of its first
trials.

Optuna is an optional dependency (``pip install 'ssl_textvae[tuning]'``) and is
imported only when a function of this module needs it.
"""

from .objective import TuningObjective, default_search_space
from .plots import plot_trials, save_results
from .search import build_classifier, tune
from .storage import check_storage_url, make_storage

__all__ = ["TuningObjective", "build_classifier", "check_storage_url", "default_search_space",
           "make_storage", "plot_trials", "save_results", "tune"]
