"""Reruns on a finished tiny run: each change plans exactly the jobs it should (dry runs through
``bench/bench_reruns.py``, on a snapshot of the workflow, so code edits never touch the repo)."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

from diffxai.core.codehash import closure

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import bench_reruns  # noqa: E402

TINY = REPO / "tests" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def planned(tiny_run, tmp_path_factory) -> dict[str, Counter]:
    work = tmp_path_factory.mktemp("reruns") / "work"
    shutil.copytree(tiny_run.parents[1], work, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    rows = bench_reruns.measure(work, TINY)
    return {label.split(" (")[0]: jobs for label, jobs in rows}


def jobs_of(planned: dict[str, Counter], start: str) -> Counter:
    (label,) = [k for k in planned if k.startswith(start)]
    return Counter({k: v for k, v in planned[label].items() if k != "all"})


@pytest.mark.parametrize(
    "change",
    [
        "nothing",
        "the same YAML with its keys in another order",
        "`models.evaluation.guidance: 2.0` written as `2`",
        "`resources.mem_mb",
        "a comment appended to `core/seeding.py`",
        "a docstring reworded",
    ],
)
def test_changes_that_change_nothing_rerun_nothing(planned, change):
    assert jobs_of(planned, change) == Counter()


def test_more_images_rerun_trajectories_not_training(planned):
    jobs = jobs_of(planned, "`data.n_images")
    assert jobs["trajectories_build"] == 2 and jobs["likelihood_compute"] == 2
    assert not {"models_train_ddpm", "models_train_classifier", "models_evaluate"} & set(jobs)
    assert not {"schedules_generate", "components_concept", "components_baseline", "saliency_compute"} & set(jobs)


def test_evaluation_samples_rerun_only_the_evaluation(planned):
    jobs = jobs_of(planned, "`models.evaluation.samples_per_class")
    assert set(jobs) == {"models_evaluate", "models_plot", "report_tables"}


def test_a_real_change_in_batching_reruns_every_job_that_imports_it(planned):
    jobs = jobs_of(planned, "a real change in `core/batching.py`")
    users = {p.stem for p in (REPO / "scripts").glob("*.py") if "diffxai.core.batching" in closure(p)}
    assert users and users <= set(jobs), sorted(users - set(jobs))
    assert {"schedules_generate", "components_concept", "attribution_compute"} <= users


def test_a_change_in_one_plot_module_reruns_only_its_plot(planned):
    assert jobs_of(planned, "a real change in `plots/likelihood.py`") == Counter({"likelihood_plot": 1})


def test_plot_resolution_reruns_only_plots(planned):
    jobs = jobs_of(planned, "`plots.dpi")
    assert jobs and all(rule.endswith(("_plot", "_plot_maps")) for rule in jobs), jobs
