"""Where tuning keeps things: Optuna's study storage (in memory, SQLite or PostgreSQL,
with heartbeats) and the pretrained VAEs of the trials (saved atomically)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings

from ._optuna import import_optuna


EXAMPLES = "'sqlite:///study.db' or 'postgresql+psycopg2://user@host/db'"


def check_storage_url(url, name="storage"):
    """A ``ValueError`` naming option ``name`` when ``url`` is no RDB URL SQLAlchemy can
    open (unknown scheme), or a SQLite file whose folder does not exist; checked
    before a study starts, not as a traceback from inside SQLAlchemy."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if "://" not in url:
        raise ValueError(f"{name} must be an RDB URL such as {EXAMPLES}, got {url!r}.")
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"{name} {url!r} has the unknown database scheme "
                         f"{url.split('://')[0]!r}; expected an RDB URL such as {EXAMPLES}.") from None
    except ArgumentError as error:
        raise ValueError(f"{name} {url!r} is not a valid RDB URL ({error}); expected one such "
                         f"as {EXAMPLES}.") from None
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:" \
            and not database.startswith("file:"):
        folder = os.path.dirname(os.path.abspath(database))
        if not os.path.isdir(folder):
            raise ValueError(f"{name} {url!r}: the folder {folder!r} of its SQLite file does not "
                             "exist; create it first or give another path.")


def make_storage(storage, heartbeat_interval=30):
    """An Optuna storage for ``storage``: None (in memory), an RDB URL (with a
    heartbeat that fails trials of killed workers and retries their parameters
    once; checked first by :func:`check_storage_url`), or a storage object, returned
    as is."""
    optuna = import_optuna()
    if storage is None or not isinstance(storage, str):
        return storage
    check_storage_url(storage)
    engine_kwargs = {"pool_pre_ping": True}
    if storage.startswith("sqlite"):
        # Several worker processes on one SQLite file wait for its lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():   # heartbeats are "experimental" in Optuna's words
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):   # Optuna >= 4.9
            retry = {"heartbeat_stale_trial_callback":
                     optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        else:
            retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
        for attempt in range(3):
            try:
                return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=heartbeat_interval,
                                                  grace_period=2 * heartbeat_interval, **retry)
            except Exception as error:
                # Workers that start together on a new database race to create its
                # tables; the loser gets an integrity error and simply tries again.
                if attempt == 2 or not type(error).__module__.startswith("sqlalchemy"):
                    raise
                time.sleep(1.0 + attempt)


def save_atomically(vae, path):
    """Save into a temporary sibling and rename it, so a killed worker leaves no
    half-written model and two workers that pretrained the same VAE do not clash."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".partial-", dir=parent)
    try:
        vae.save(temporary)
        try:
            os.rename(temporary, path)
        except OSError:
            if not os.path.isfile(os.path.join(path, "config.json")):
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
