"""Record the golden predictions of every shipped variant (run once, before a refactor).

``python tests/golden/record_golden.py`` trains each ``variants/*.toml`` network, with its fully
resolved ``[model]`` table, on the first rows of its training split and stores the inputs, the
resolved table and the predictions in ``tests/golden/variants.npz``; ``tests/test_golden.py``
retrains from the stored table and data and checks the predictions agree to 1e-12 (on the
recording's platform, below). The recording is for refactors that must not change behaviour:
rerun it only on purpose; ``python tests/golden/record_golden.py KEY ...`` re-records the
named variants only.

The file also stores the recording machine's floating-point platform (:func:`platform`):
BLAS kernels and NumPy's SIMD loops are chosen per CPU at run time and round differently, and
one-pass training carries a last-bit difference through every later update, so on another
platform the test checks to 1e-3 only. Re-recording some variants is refused unless the
others were recorded on this platform.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from bayeslayers import config, datasets

ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_TEST = 120, 40


def platform() -> str:
    """The floating-point platform: the BLAS library and the kernels it picked for this CPU,
    and the SIMD extensions NumPy dispatches to (JSON)."""
    import scipy
    import scipy.linalg  # SciPy's own BLAS is loaded, whoever imported it first
    from threadpoolctl import threadpool_info

    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__

    blas = sorted(
        f"{info['internal_api']} {info['version']} {info.get('architecture', '')}"
        for info in threadpool_info()
        if info["user_api"] == "blas"
    )
    simd = sorted(name for name, found in __cpu_features__.items() if found)
    # the libraries' own compiled loops (NumPy's exp/log, SciPy's special functions) change
    # between versions too: a Laplace head moved by 2e-9 between two installs of one machine
    versions = {lib.__name__: lib.__version__ for lib in (np, scipy)}
    return json.dumps({"blas": blas, "simd": simd, "versions": versions})


def _explicit(obj) -> dict:
    fields = dataclasses.asdict(obj)
    return {"kind": obj.kind, **{k: v for k, v in fields.items() if v is not None}}


def main() -> None:
    arrays: dict[str, np.ndarray] = {}
    tables = {}
    for path in sorted((ROOT / "variants").glob("*.toml")):
        cfg = config.load(path)
        data = dict(cfg.data)
        name = data.pop("name")
        ds = datasets.load_dataset(name, **data)
        net = config.build_network(cfg)
        X, y = ds.X_train[:N_TRAIN], ds.y_train[:N_TRAIN]
        Xt = ds.X_test[:N_TEST]
        net.fit(X, y, passes=cfg.train["passes"], batch_size=cfg.train["batch_size"])
        key = path.stem
        arrays[f"{key}.X"], arrays[f"{key}.y"], arrays[f"{key}.Xt"] = X, y, Xt
        if net.head.is_classifier:
            arrays[f"{key}.out"] = net.predict_proba(Xt)
        else:
            mean, std = net.predict(Xt, return_std=True)
            arrays[f"{key}.out"] = np.stack([mean, std])
        model = dict(cfg.model)  # every layer and head parameter explicit, defaults included
        model["head"] = _explicit(net.head)
        model["layers"] = [_explicit(layer) for layer in net.layers]
        if model.get("hidden_noise") is None:  # what an omitted hidden_noise resolved to
            model["hidden_noise"] = model["noise"]
        model.setdefault("targets", "min_norm")  # the only backward step at the recording
        tables[key] = {"model": model, "train": cfg.train}
        print(key, arrays[f"{key}.out"].ravel()[:3])
    arrays["tables"] = np.array(json.dumps(tables))
    arrays["platform"] = np.array(platform())
    np.savez_compressed(ROOT / "tests" / "golden" / "variants.npz", **arrays)


def predictions(table: dict, arrays, key: str) -> np.ndarray:
    """Fit the variant ``key`` from its stored table and rows; its stored-kind predictions."""
    # recorded before the skip connection, the one-hot head's temperature, the iterate
    # average and the hidden scale: a table without the key had none of them (scale 1)
    model = {"skip": False, "average": False, "hidden_scale": 1.0, **table["model"]}
    if model["head"].get("kind") == "onehot":
        model["head"] = {"temperature": None, **model["head"]}
    net = config.build_network(model)
    net.fit(
        arrays[f"{key}.X"],
        arrays[f"{key}.y"],
        passes=table["train"]["passes"],
        batch_size=table["train"]["batch_size"],
    )
    Xt = arrays[f"{key}.Xt"]
    if net.head.is_classifier:
        return net.predict_proba(Xt)
    return np.stack(net.predict(Xt, return_std=True))


def rerecord(keys: list[str]) -> None:
    """Re-record the predictions of ``keys`` from their stored tables and data.

    For a deliberate behaviour change of those variants only (name it in the commit).
    """
    path = ROOT / "tests" / "golden" / "variants.npz"
    arrays = dict(np.load(path))
    tables = json.loads(str(arrays["tables"]))
    unknown = sorted(set(keys) - set(tables))
    if unknown:
        raise SystemExit(f"no recorded variant {unknown}; recorded: {sorted(tables)}")
    if set(tables) - set(keys) and str(arrays.get("platform", "")) != platform():
        raise SystemExit(
            "the other variants were recorded on another platform: re-record them all "
            "(name every key) so that the file holds one platform's predictions"
        )
    for key in keys:
        arrays[f"{key}.out"] = predictions(tables[key], arrays, key)
        print("re-recorded", key)
    arrays["platform"] = np.array(platform())
    np.savez_compressed(path, **arrays)


if __name__ == "__main__":
    import sys

    rerecord(sys.argv[1:]) if sys.argv[1:] else main()
