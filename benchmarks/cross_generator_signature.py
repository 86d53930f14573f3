"""What marks a SOZ contact in each simulator family: univariate ROC-AUC of every model input.

``python -m benchmarks.cross_generator_signature --out WORK [WORK ...]`` reads the caches a
:mod:`benchmarks.cross_generator` run left in each work folder (the neural models' clip spectra,
:mod:`trainer.feature_cache`, and the SVM's channel features, :mod:`trainer.svm_stage`; nothing
is recomputed) and, per family and kind of recording (ictal / interictal), gives the ROC-AUC of
each input taken alone over the family's (recording, channel) rows:

- the neural input: each band of the recording's mean log-amplitude spectrum;
- the spectral tilt: each contact's least-squares slope over log-frequency (log amplitude per
  ln f), relative to its recording's median contact (AUC of the negated slope: a steeper,
  slower spectrum ranks higher), with the mean slope of SOZ and other contacts;
- the SVM's features, z-scored within each recording as the SVM sees them (the newest feature
  version the store has cached).

An AUC near 0.5 says the input carries no SOZ evidence in that family; an input whose AUC is far
from 0.5 in one family and near 0.5 in the other is a signature a model trained on the first
cannot carry to the second. Results: ``cross_generator_signature.md`` in ``--results``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def _md(df: pd.DataFrame, digits: int) -> str:
    """A DataFrame as a markdown table (index first)."""
    head = "| | " + " | ".join(map(str, df.columns)) + " |"
    rule = "|---" * (len(df.columns) + 1) + "|"
    body = [f"| {i} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |"
            for i, row in zip(df.index, df.to_numpy(float), strict=True)]  # fmt: skip
    return "\n".join([head, rule, *body])


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")


def signature(work: Path) -> dict[str, pd.DataFrame]:
    """The three tables of one work folder (columns ``<family>-<kind>``)."""
    from ingest.store import ClipStore
    from models.svm import normalise_within
    from trainer.config import TrainConfig
    from trainer.datasets import recording_table
    from trainer.feature_cache import FeatureCacheReader, cache_url
    from trainer.site_augment import feature_frequencies
    from trainer.svm_stage import feature_cache_dir

    store_url = str(work / "store")
    store = ClipStore.open(store_url)
    recs = recording_table(store)
    manifest = store.recordings()
    ictal = dict(zip(manifest["recording_id"], manifest["n_seizures"] > 0, strict=True))
    fc = TrainConfig(clip_extras=()).feature_config("sozformer")  # the spectra alone
    reader = FeatureCacheReader(cache_url(store_url, fc))
    freqs = feature_frequencies(store.clip_samples, store.sfreq, fc)
    logf = np.log(freqs) - np.log(freqs).mean()
    svm_dir = Path(feature_cache_dir(store_url))
    if not any(svm_dir.glob("*.parquet")):  # a run of an older sozkit: its feature version
        svm_dir = sorted(svm_dir.parent.glob("svm-v*"))[-1]
    svm_feats = pd.concat([pd.read_parquet(p) for p in sorted(svm_dir.glob("*.parquet"))])
    groups: dict[str, dict[str, list]] = {}
    for r in recs:
        key = f"{r.cohort}-{'ictal' if ictal[r.recording_id] else 'interictal'}"
        g = groups.setdefault(key, {"spec": [], "slope": [], "y": [], "svm": [], "rec": []})
        spec = reader.read(r.recording_id, 0, r.n_clips).mean(axis=0)  # (C, F)
        slope = (spec - spec.mean(axis=-1, keepdims=True)) @ logf / (logf @ logf)
        rows = svm_feats[svm_feats["recording_id"] == r.recording_id].sort_values("channel_index")
        g["spec"].append(spec)
        g["slope"].append(slope - np.median(slope))
        g["y"].append(r.labels.astype(int))
        g["svm"].append(rows.drop(columns=["recording_id", "channel_index", "channel", "n_clips"]))
        g["rec"].append(np.full(r.n_channels, r.recording_id))
    bands, tilt, svm = {}, {}, {}
    for key, g in sorted(groups.items()):
        y = np.concatenate(g["y"])
        spec, slope = np.concatenate(g["spec"]), np.concatenate(g["slope"])
        bands[key] = [_auc(y, spec[:, j]) for j in range(spec.shape[1])]
        tilt[key] = {
            "AUC (steeper)": _auc(y, -slope),
            "slope SOZ": float(slope[y == 1].mean()),
            "slope other": float(slope[y == 0].mean()),
            "sd other": float(slope[y == 0].std()),
        }
        table = pd.concat(g["svm"], ignore_index=True)
        z = normalise_within(table.to_numpy(float), np.concatenate(g["rec"]))
        svm[key] = dict(
            zip(table.columns, (_auc(y, z[:, j]) for j in range(z.shape[1])), strict=True)
        )
    return {
        "bands": pd.DataFrame(bands, index=[f"{f:.1f} Hz" for f in freqs]),
        "tilt": pd.DataFrame(tilt),
        "svm": pd.DataFrame(svm),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", nargs="+", required=True, help="cross_generator work folders")
    parser.add_argument("--results", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--every", type=int, default=3, help="print every k-th band (3)")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    cmd = " ".join(["python -m benchmarks.cross_generator_signature", *(argv or sys.argv[1:])])
    lines = ["# SOZ signature per simulator family (univariate ROC-AUC)", "",
             f"Command: `{cmd}`; load average {load:.1f}.", ""]  # fmt: skip
    for work in args.out:
        tables = signature(Path(work))
        lines += [f"## {work}", "", "Spectral tilt (log amplitude per ln f, relative to the "
                  "recording's median contact):", "", _md(tables["tilt"].T, 3), "",
                  "SVM features (z-scored within each recording):", "",
                  _md(tables["svm"], 3), "",
                  "Neural input bands (recording mean of the log-amplitude spectrum):", "",
                  _md(tables["bands"].iloc[:: args.every], 2), ""]  # fmt: skip
    text = "\n".join(lines) + "\n"
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "cross_generator_signature.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
