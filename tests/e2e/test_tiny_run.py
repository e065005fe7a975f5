"""The whole DAG on the tiny config (one run per session, ``tiny_run``): its tables equal the
golden tables of the pre-refactor code, and every rule reads every setting it is given."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from diffxai.io.specs import check_table, spec_for_path
from diffxai.workflow.params import unread
from helpers import GOLDEN


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.parquet")))
def test_table_equals_the_golden_table(tiny_run, name):
    want = pd.read_parquet(GOLDEN / f"{name}.parquet")
    got = pd.read_parquet(tiny_run / "tables" / f"{name}.parquet")
    assert list(got.columns) == list(want.columns), name
    assert len(got) == len(want), name
    for col in want.columns:
        a, b = want[col].to_numpy(), got[col].to_numpy()
        if np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating):
            np.testing.assert_allclose(
                b.astype(float), a.astype(float), rtol=1e-5, atol=1e-7, equal_nan=True, err_msg=f"{name}.{col}"
            )
        else:
            assert list(map(str, b)) == list(map(str, a)), f"{name}.{col}"


def test_every_table_meets_its_contract_spec(tiny_run):
    for path in sorted((tiny_run / "tables").glob("*.parquet")):
        check_table(pd.read_parquet(path), spec_for_path(path))


def test_every_rule_reads_every_setting_it_receives(tiny_run):
    """Each job recorded the settings it was given and the ones its driver read
    (DIFFXAI_TRACK_PARAMS); across a rule's jobs, nothing it is given goes unread."""
    per_rule: dict[str, tuple[set, dict]] = {}
    for f in (tiny_run / "logs").rglob("*.params.json"):
        rec = json.loads(f.read_text())
        reads, _ = per_rule.setdefault(rec["rule"], (set(), rec["settings"]))
        reads |= set(rec["reads"])
    assert len(per_rule) >= 20, sorted(per_rule)
    problems = {rule: unread(settings, reads) for rule, (reads, settings) in per_rule.items()}
    assert not {r: u for r, u in problems.items() if u}, "settings given but never read"
