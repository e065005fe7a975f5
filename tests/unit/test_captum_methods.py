"""The torch-free Captum check (diffxai.config.captum_methods) agrees with the runtime one
(diffxai.methods.attribution.build_method): same signatures, same kinds, same one-line errors."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import captum.attr as ca
import pytest

from diffxai.config import captum_methods as cm
from diffxai.core.attrspec import INPUT, LAYER, NOISE_TUNNEL, UNKNOWN
from diffxai.core.errors import DiffxaiError
from diffxai.methods.attribution import POSTER_METHODS, build_method, build_methods

REPO = Path(__file__).resolve().parents[2]

ATTRIBUTION_CLASSES = sorted(
    n for n in dir(ca) if inspect.isclass(getattr(ca, n)) and issubclass(getattr(ca, n), ca.Attribution)
)
CLASS_LIKE_NAMES = sorted(n for n in dir(ca) if n[:1].isupper())


def _runtime_kind(cls) -> str:
    if not (inspect.isclass(cls) and issubclass(cls, ca.Attribution)):
        return UNKNOWN
    if cls is ca.NoiseTunnel:
        return NOISE_TUNNEL
    return LAYER if issubclass(cls, (ca.LayerAttribution, ca.NeuronAttribution)) else INPUT


def test_enumeration_covers_the_input_methods():
    index = cm.captum_index()
    inputs = {n for n in ATTRIBUTION_CLASSES if index.read(n).kind == INPUT}
    assert {"IntegratedGradients", "GradientShap", "Occlusion", "Saliency", "DeepLift", "FeatureAblation"} <= inputs
    assert cm.captum_index() is index  # cached per installed version


@pytest.mark.parametrize("name", ATTRIBUTION_CLASSES)
def test_ast_signature_matches_inspect(name):
    """Known answer: what the source says equals inspect.signature of the imported class."""
    cls = getattr(ca, name)
    info = cm.captum_index().read(name)
    assert info.kind == _runtime_kind(cls)
    assert (info.module, info.qualname) == (cls.__module__, cls.__qualname__)
    init = inspect.signature(cls.__init__).parameters.values()
    assert [n for n, _ in info.signature.init] == [p.name for p in init]
    assert [d for _, d in info.signature.init] == [p.default is not inspect.Parameter.empty for p in init]
    if hasattr(cls, "attribute"):
        assert list(info.signature.attribute) == list(inspect.signature(cls.attribute).parameters)
    else:
        assert info.signature.attribute is None


@pytest.mark.parametrize("name", CLASS_LIKE_NAMES)
def test_kind_of_every_exported_name(name):
    assert cm.captum_index().read(name).kind == _runtime_kind(getattr(ca, name))


BAD_ENTRIES = [
    # the cases of tests/test_attribution.py::test_bad_method_is_one_line_error_naming_it
    {"captum": "IntegratedGradientz"},
    {"captum": "IntegratedGradients", "attribute": {"n_stepz": 3}},
    {"captum": "IntegratedGradients", "args": {"multiply": True}},
    {"captum": "IntegratedGradients", "attribute": {"target": 3}},
    {"captum": "LayerGradCam"},
    {"captum": "NoiseTunnel"},
    {"captum": "GradientShap", "attribute": {"baselines": 0.0}},
    {"captum": "Saliency", "noise_tunnel": {"nt_sample": 3}},
    {"captum": "Saliency", "batch_size": 0},
    {"captum": "Saliency", "extra": 1},
    {"attribute": {}},
    # more: classes, constructor arguments, **kwargs, reserved keys, sizes
    {"captum": "NeuronGradient"},
    {"captum": "Summarizer"},
    {"captum": "visualization"},
    {"captum": 3},
    {"captum": "Attribution"},
    {"captum": "GradientAttribution"},
    {"captum": "DataLoaderAttribution"},
    {"captum": "GuidedGradCam"},
    {"captum": "LimeBase", "args": {"interpretable_model": 1}},
    {"captum": "IntegratedGradients", "args": {"kwargs": {}}},
    {"captum": "FeatureAblation", "attribute": {"anything": 1}},
    {"captum": "FeatureAblation", "attribute": {"kwargs": {}}},
    {"captum": "Occlusion", "attribute": {"show_progress": True}},
    {"captum": "GradientShap", "attribute": {"baselines": []}},
    {"captum": "GradientShap", "attribute": {"baselines": [0.0, "x"]}},
    {"captum": "GradientShap", "attribute": {"stdevs": "big"}},
    {"captum": "Saliency", "noise_tunnel": 3},
    {"captum": "Saliency", "batch_size": "8"},
    {"captum": "Saliency", "reference_size": 0},
    "IntegratedGradients",
]


@pytest.mark.parametrize("entry", BAD_ENTRIES, ids=[str(e) for e in BAD_ENTRIES])
def test_same_one_line_error_as_build_method(entry):
    with pytest.raises(DiffxaiError) as runtime:
        build_method("m", entry)
    with pytest.raises(DiffxaiError) as planned:
        cm.check_method("m", entry)
    assert str(planned.value) == str(runtime.value)
    assert "\n" not in str(planned.value) and str(planned.value).startswith("config.attribution.methods.m")


def test_same_result_for_good_entries(repo):
    from diffxai.config.load import load_config

    methods = dict(POSTER_METHODS)
    methods.update(load_config(repo / "config" / "config.yaml")["attribution"]["methods"])
    methods["nt"] = {"captum": "Saliency", "noise_tunnel": {"nt_type": "smoothgrad", "nt_samples": 4}, "batch_size": 8}
    methods["gc"] = {"captum": "GuidedGradCam", "args": {"layer": "x"}, "attribute": {"interpolate_mode": "nearest"}}
    runtime = {k: tuple(vars(v).values()) for k, v in build_methods(methods).items()}
    planned = {k: tuple(v) for k, v in cm.check_methods(methods).items()}
    assert planned == runtime
    for bad in ({}, None):
        with pytest.raises(DiffxaiError) as a:
            build_methods(bad)
        with pytest.raises(DiffxaiError) as b:
            cm.check_methods(bad)
        assert str(a.value) == str(b.value)


def test_checking_the_config_imports_neither_torch_nor_captum(repo):
    code = textwrap.dedent(
        f"""
        import json, sys
        import diffxai.config.checks as checks
        from diffxai.config.load import load_config
        checks.check_config(load_config({str(repo / "config" / "config.yaml")!r}))
        print(json.dumps(sorted(m for m in ("torch", "captum") if m in sys.modules)))
        """
    )
    env = {"PYTHONPATH": str(repo / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_reader_follows_python_semantics(tmp_path):
    """A fake captum: overloads, *args/**kwargs, keyword-only and positional-only parameters,
    relative imports, a diamond (C3), decorators that keep the signature, and unreadable cases."""
    root = tmp_path / "captum"
    (root / "attr" / "_core").mkdir(parents=True)
    (root / "__init__.py").write_text('__version__ = "0.0-test"\n')
    (root / "attr" / "_core" / "__init__.py").write_text("")
    (root / "attr" / "__init__.py").write_text(
        textwrap.dedent("""
        from ._core.base import Attribution, LayerAttribution, NeuronAttribution, NoiseTunnel
        from captum.attr._core.m import A, B, C, D, Assigned, Stat, Outside
        from ._core import m as mod
    """)
    )
    (root / "attr" / "_core" / "base.py").write_text(
        textwrap.dedent("""
        from typing import Generic, TypeVar
        T = TypeVar("T")
        class Attribution:
            def __init__(self, forward_func): ...
            attribute: object
        class Internal(Attribution, Generic[T]):
            def __init__(self, forward_func, layer, device_ids=None): ...
        class LayerAttribution(Internal): ...
        class NeuronAttribution(Internal): ...
        class NoiseTunnel(Attribution):
            def __init__(self, attribution_method): ...
    """)
    )
    (root / "attr" / "_core" / "m.py").write_text(
        textwrap.dedent("""
        import typing
        from functools import wraps
        import torch.nn as nn
        from .base import Attribution as Base, LayerAttribution
        def deco(f):
            @wraps(f)
            def w(*a, **k):
                return f(*a, **k)
            return w
        class A(Base):
            @typing.overload
            def attribute(self, inputs, x): ...
            @deco
            def attribute(self, inputs, /, y=1, *args, z, w=2, **kw): ...
        class B(A):
            def __init__(self, model, *extra, q, r=0, **opts): ...
        class C(A):
            def attribute(self, inputs, c=0): ...
        class D(B, C): ...
        class Assigned(A):
            attribute = A.attribute
        class Stat(A):
            @staticmethod
            def attribute(inputs): ...
        class Outside(nn.Module, A): ...
    """)
    )
    index = cm.CaptumIndex(root, "0.0-test")
    a, b, d = index.read("A"), index.read("B"), index.read("D")
    assert a.kind == INPUT and a.signature.init == (("self", False), ("forward_func", False))
    assert a.signature.attribute == ("self", "inputs", "y", "args", "z", "w", "kw")
    assert b.signature.init == (
        ("self", False),
        ("model", False),
        ("extra", False),
        ("q", False),
        ("r", True),
        ("opts", False),
    )
    assert d.signature.attribute == ("self", "inputs", "c")  # D -> B -> C -> A: C.attribute wins
    assert [k[2] for k in index.mro(("captum", "captum.attr._core.m", "D"))] == ["D", "B", "C", "A", "Attribution"]
    assert index.read("LayerAttribution").kind == LAYER and index.read("NoiseTunnel").kind == NOISE_TUNNEL
    assert index.read("mod").kind == UNKNOWN and index.read("Nope").kind == UNKNOWN
    for name in ("Assigned", "Stat", "Outside"):
        with pytest.raises(cm.Unreadable):
            index.read(name)
