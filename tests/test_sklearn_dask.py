"""GridSearchCV over pynn estimators on a real local Dask cluster, through joblib's Dask backend
(scikit-learn's documented route to a cluster), and pynn's thread count inside Dask workers.

What distributed does about threads: a worker's nanny spawns the worker process with the
variables of the `distributed.nanny.pre-spawn-environ` config set in its environment before
Python starts. Its default sets OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS to 1,
so every worker runs single-threaded native code and parallelism comes from the workers and
their threads alone. A variable already set in the environment of the process that starts the
cluster takes precedence over that default (distributed.nanny._get_env_variables); the fixture
below removes any such variable so the tests see distributed's own default. pynn reads its
thread count from OMP_NUM_THREADS at start-up, so it must report and use one thread there.
"""
import logging
import os

import dask
import distributed
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import pynn
from pynn.sklearn import PynnClassifier

FAST = dict(hidden_layer_sizes=(8,), epochs=20, random_state=0)


@pytest.fixture(scope="module")
def client():
    # Workers in processes (spawned by nannies), one thread each; no dashboard (it needs an
    # extra package and a port). The context managers close the client, then the cluster,
    # even if a test fails.
    with pytest.MonkeyPatch.context() as mp:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            mp.delenv(var, raising=False)  # a parent's value would override the default
        yield from _cluster_client()


def _cluster_client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as cli:
        cli.wait_for_workers(2, timeout=60)
        yield cli


def _thread_report():
    return {"pid": os.getpid(), "omp_env": os.environ.get("OMP_NUM_THREADS"),
            "pynn_threads": pynn.get_num_threads()}


def test_dask_default_limits_worker_threads():
    # The behaviour the other tests rely on is distributed's default, not something set here.
    env = dask.config.get("distributed.nanny.pre-spawn-environ")
    assert str(env["OMP_NUM_THREADS"]) == "1"


def test_pynn_obeys_the_worker_thread_limit(client):
    reports = client.run(_thread_report)
    assert len(reports) == 2
    for report in reports.values():
        assert report["pid"] != os.getpid()  # really separate processes
        assert report["omp_env"] == "1"
        assert report["pynn_threads"] == 1


def _recording_classifier(**params):
    # A class defined in a function is pickled by value (cloudpickle), so the workers need not
    # import this test module.
    class RecordingClassifier(PynnClassifier):
        def fit(self, X, y, sample_weight=None):
            self.fit_pid_ = os.getpid()
            self.fit_threads_ = pynn.get_num_threads()
            return super().fit(X, y, sample_weight)

    return RecordingClassifier(**params)


def test_grid_search_through_the_dask_backend(client):
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), PynnClassifier(**FAST))
    grid = {"pynnclassifier__hidden_layer_sizes": [(4,), (8,)],
            "pynnclassifier__learning_rate": [1e-3, 1e-2]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    with joblib.parallel_backend("dask"):
        on_dask = GridSearchCV(pipe, grid, cv=cv, n_jobs=-1).fit(X, y)
    local = GridSearchCV(pipe, grid, cv=cv, n_jobs=1).fit(X, y)
    # Seeded pynn training is bitwise reproducible in any process and with any thread count.
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    assert on_dask.best_params_ == local.best_params_
    assert on_dask.best_score_ > 0.8


def test_fits_on_dask_workers_run_single_threaded(client):
    X, y = load_iris(return_X_y=True)
    worker_pids = set(client.run(os.getpid).values())
    with joblib.parallel_backend("dask"):
        result = cross_validate(_recording_classifier(**FAST), X, y, cv=4, n_jobs=-1,
                                return_estimator=True)
    fitted = result["estimator"]
    assert {est.fit_pid_ for est in fitted} <= worker_pids  # every fit ran on a worker
    assert [est.fit_threads_ for est in fitted] == [1] * 4
    assert np.all(result["test_score"] > 0.5)
