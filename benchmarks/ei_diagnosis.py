"""Why the Epileptogenicity Index ranks one family's seizures and not the other's.

``python -m benchmarks.ei_diagnosis STORE [STORE ...]`` reads the ictal recordings of each
family (cohort) of each clip store (read-only; the store of a ``benchmarks.cross_generator``
work folder) and reports, per family, what the EI of :func:`models.baseline.
epileptogenicity_index` sees around the annotated onset of each seizure (the onset of the
store's clips, the BIDS ``sz onset`` event), split by SOZ and non-SOZ contacts:

- the median energy ratio before the onset (-30 to -5 s), in its first 5 s and 5-15 s after;
- the Page-Hinkley statistic's largest rise above its running minimum from ``onset - lead_s``
  on (an alarm needs ``threshold``, 15 by default), the share of contacts alarmed and their
  detection times from the onset;
- the ROC-AUC of the EI over the family's ictal contacts (pooled) for a grid of the
  Page-Hinkley ``bias`` and ``threshold``.

``--sources`` instead integrates one Wendling region (:func:`ingest.wendling.simulate_network`,
the family's coupling at difficulty 0.5) at each activity type of the family's seizures for
10 s and reports its amplitude, spectral peak and energy ratio at the source, before volume
conduction and noise (``ei_sources.json``).

Results: ``ei_diagnosis.json`` / ``.md`` in ``--results``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.cross_generator_baseline import RESULTS
from models.baseline import energy_ratio, epileptogenicity_index

#: (bias, threshold) pairs of the Page-Hinkley grid.
GRID = tuple(itertools.product((0.1, 0.25, 0.5), (1.0, 3.0, 5.0, 15.0)))
#: Windows of the energy ratio medians, seconds from the onset.
SPANS = {"pre": (-30.0, -5.0), "0-5 s": (0.0, 5.0), "5-15 s": (5.0, 15.0)}


def _quartiles(values: list[float]) -> list[float] | None:
    return np.percentile(values, [25, 50, 75]).round(2).tolist() if values else None


def ictal_recordings(store, family: str):
    """``(signal, onset_s, soz)`` of every ictal recording of ``family``, whole recording."""
    recs, chans = store.recordings(), store.channels()
    for rid in recs[(recs["cohort"] == family) & (recs["n_seizures"] > 0)]["recording_id"]:
        soz = chans[chans["recording_id"] == rid].sort_values("channel_index")["soz"]
        clips = store.clips([rid]).sort_values("clip_index")
        sz = clips.dropna(subset=["seizure"])
        onset = float((sz["start_s"] - sz["seconds_from_onset"]).iloc[0])
        signal = np.concatenate(list(store.read_clips(rid, 0, len(clips))), axis=-1)
        yield signal.astype(np.float64), onset, soz.to_numpy(bool)


def family_figures(recordings, sfreq: float, *, grid=GRID) -> dict:
    """The figures of the module docstring for one family's ictal recordings."""
    keys = ("soz", "non_soz")
    er_med = {k: {s: [] for s in SPANS} for k in keys}
    rise, det, flagged = ({k: [] for k in keys} for _ in range(3))
    y, scores = [], {f"bias {b}, threshold {t}": [] for b, t in grid}
    for signal, onset, soz in recordings:
        times, er = energy_ratio(signal, sfreq)
        mean = np.cumsum(er, axis=1) / np.arange(1, er.shape[1] + 1)
        u = np.cumsum(er - mean - 0.5, axis=1)[:, np.searchsorted(times, onset - 5.0) :]
        top = (u - np.minimum.accumulate(u, axis=1)).max(axis=1)
        _, d = epileptogenicity_index(signal, sfreq, onset, return_detection=True)
        for k, mask in zip(keys, (soz, ~soz), strict=True):
            for s, (a, b) in SPANS.items():
                w = (times >= onset + a) & (times < onset + b)
                er_med[k][s].append(float(np.median(er[mask][:, w])))
            rise[k] += top[mask].tolist()
            flagged[k] += np.isfinite(d[mask]).tolist()
            det[k] += (d[mask][np.isfinite(d[mask])] - onset).tolist()
        y.append(soz)
        for (b, t), key in zip(grid, scores, strict=True):
            scores[key].append(epileptogenicity_index(signal, sfreq, onset, bias=b, threshold=t))
    y_all = np.concatenate(y)
    return {
        "recordings": len(y),
        "contacts": {"soz": int(y_all.sum()), "non_soz": int((~y_all).sum())},
        "er_median": {k: {s: float(np.median(v)) for s, v in er_med[k].items()} for k in keys},
        "ph_max_rise_quartiles": {k: _quartiles(rise[k]) for k in keys},
        "alarmed": {k: float(np.mean(flagged[k])) for k in keys},
        "detection_from_onset_quartiles": {k: _quartiles(det[k]) for k in keys},
        "roc_auc_ei": {k: roc_auc_score(y_all, np.concatenate(v)) for k, v in scores.items()},
    }


def source_types(seconds: float = 10.0) -> dict[str, dict[str, float]]:
    """Amplitude (mV), spectral peak (Hz) and energy ratio of one region at each type."""
    from scipy.signal import welch

    from ingest import wendling as w

    types = {
        "rest, EZ (4.28, 30, 18)": (4.28, 30.0, 18.0),
        "rest, healthy (3.5, 30, 18)": (3.5, 30.0, 18.0),
        "FAST_ONSET": w.FAST_ONSET,
        "RHYTHMIC_SPIKES": w.RHYTHMIC_SPIKES,
        "SLOW_RHYTHMIC": w.SLOW_RHYTHMIC,
    }
    gains = np.array(list(types.values()), dtype=float).T  # (3, n_types)
    params = w.WendlingParams(coupling=10.0 + 15.0 * 0.5)
    lfp = w.simulate_network(
        lambda t: np.broadcast_to(gains[:, :, None, None], (3, len(types), 1, t.size)),
        len(types), int(seconds * params.sfreq), np.zeros((1, 1)), params=params,
        rng=np.random.default_rng(0),
    )[:, 0].astype(np.float64)  # fmt: skip
    lfp -= lfp.mean(axis=1, keepdims=True)
    _, er = energy_ratio(lfp, params.sfreq)
    freqs, psd = welch(lfp, fs=params.sfreq, nperseg=int(params.sfreq), axis=-1)
    peak = freqs[1 + np.argmax(psd[:, 1:], axis=1)]
    return {
        name: {"std_mv": float(lfp[k].std()), "peak_hz": float(peak[k]),
               "energy_ratio_median": float(np.median(er[k]))}
        for k, name in enumerate(types)
    }  # fmt: skip


def render(result: dict) -> str:
    lines = [
        "| store | family | ER SOZ / non-SOZ: pre, 0-5 s, 5-15 s | PH max rise (median) "
        "SOZ / non | alarmed SOZ / non | detection - onset (median) SOZ / non "
        "| EI ROC-AUC (bias 0.5, threshold 15) | best EI ROC-AUC of the grid |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for store, fams in result["stores"].items():
        for fam, f in fams.items():
            er = ", ".join(f"{f['er_median']['soz'][s]:.2f} / {f['er_median']['non_soz'][s]:.2f}"
                           for s in SPANS)  # fmt: skip
            med, non = (
                [(f[key][part] or [np.nan] * 3)[1]
                 for key in ("ph_max_rise_quartiles", "detection_from_onset_quartiles")]
                for part in ("soz", "non_soz")
            )  # fmt: skip
            auc = f["roc_auc_ei"]
            best = max(auc, key=auc.get)
            lines.append(
                f"| {Path(store).parent.name} | {fam} | {er} | {med[0]:.1f} / {non[0]:.1f} "
                f"| {f['alarmed']['soz']:.2f} / {f['alarmed']['non_soz']:.2f} "
                f"| {med[1]:.1f} / {non[1]:.1f} s "
                f"| {auc['bias 0.5, threshold 15.0']:.3f} | {auc[best]:.3f} ({best}) |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="*", help="clip stores (read only)")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the results")
    parser.add_argument("--sources", action="store_true", help="the region types only")
    args = parser.parse_args(argv)
    from ingest.store import ClipStore
    from trainer.run import json_safe

    load, cpu = os.getloadavg()[0], os.times()
    stores, stem = {}, "ei_diagnosis"
    if args.sources:
        stores, stem = {"wendling regions": source_types()}, "ei_sources"
    for url in [] if args.sources else args.stores:
        store = ClipStore.open(url)
        families = sorted(store.recordings()["cohort"].unique())
        stores[url] = {
            fam: family_figures(ictal_recordings(store, fam), store.sfreq) for fam in families
        }
    now = os.times()
    result = json_safe({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.ei_diagnosis", *(argv or sys.argv[1:])]),
        "data": "simulated",
        "load_avg": f"{load:.1f} -> {os.getloadavg()[0]:.1f}",
        "cpu_s": round(now.user + now.system - cpu.user - cpu.system, 1),
        "stores": stores,
    })  # fmt: skip
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    if args.sources:
        print(json.dumps(result["stores"], indent=2))
        return 0
    (out / f"{stem}.md").write_text(render(result), "utf-8")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
