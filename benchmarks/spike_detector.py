"""CPU cost of the per-clip Janca spike detector against the spectrum, before and after a change.

Times, on simulated 5-s clips (pink noise with spikes on every third contact), in CPU (process)
seconds, best of ``--repeats`` interleaved runs:

- ``spectra``: the neural models' clip features without extras
  (:func:`models.site_norm.clip_features`, 64 bands, 0.5 Hz - Nyquist);
- ``spikes``: :func:`models.features.clip_spike_rate`, the spike rate of ``--clip-extras spikes``
  and of the SVM's features;
- ``spectra_spikes``: the clip features with ``extras=["spikes"]`` (what serving computes per
  clip for a model trained with ``--clip-extras spikes``);
- ``spikes_before`` (with ``--before REV``): the detector of ``models/spikes.py`` at git revision
  ``REV`` on the same clips and settings, checked to give the same rates.

Prints CPU ms per clip and contact and writes ``benchmarks/results/spike_detector.json``::

    python -m benchmarks.spike_detector --before main
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from ingest.fileio import write_json
from models.features import CLIP_SPIKE_PARAMS, clip_spike_rate
from models.site_norm import clip_features
from tests.models.test_spikes import simulate_spikes

FEATURE_CONFIG = {"n_bands": 64, "fmin": 0.5, "fmax": None}


def load_before(rev: str) -> ModuleType:
    """``models/spikes.py`` as it was at git revision ``rev``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:models/spikes.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="spike-detector-")) / "spikes_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("spikes_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["spikes_before"] = module
    spec.loader.exec_module(module)
    return module


def simulated_clips(sfreq: float, n_clips: int, n_chans: int, seed: int = 0) -> np.ndarray:
    """Clips ``(n_clips, n_chans, 5 * sfreq)`` cut from one spiky recording, float32 like the store."""
    x, _ = simulate_spikes(
        sfreq, duration_s=5.0 * n_clips, n_chans=n_chans, spiky=tuple(range(0, n_chans, 3)),
        rate_per_s=0.4, seed=seed,
    )  # fmt: skip
    n = int(5 * sfreq)
    return np.ascontiguousarray(x.reshape(n_chans, n_clips, n).transpose(1, 0, 2), np.float32)


def best_cpu(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best CPU seconds of each function over ``repeats`` rounds that run them in turn."""
    best = dict.fromkeys(fns, np.inf)
    for fn in fns.values():
        fn()  # warm-up: caches, allocations
    for _ in range(repeats):
        for name, fn in fns.items():
            c0 = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - c0)
    return best


def bench_case(
    sfreq: float, n_clips: int, n_chans: int, repeats: int, before: ModuleType | None
) -> dict:
    clips = simulated_clips(sfreq, n_clips, n_chans)
    fns = {
        "spectra": lambda: clip_features(clips, sfreq, FEATURE_CONFIG),
        "spikes": lambda: clip_spike_rate(clips, sfreq),
        "spectra_spikes": lambda: clip_features(
            clips, sfreq, {**FEATURE_CONFIG, "extras": ["spikes"]}
        ),
    }
    rows = np.asarray(clips, dtype=np.float64).reshape(n_clips * n_chans, -1)
    if before is not None:
        fns["spikes_before"] = lambda: before.detect_spikes(rows, sfreq, **CLIP_SPIKE_PARAMS)
        old = fns["spikes_before"]().rate_per_minute().reshape(n_clips, n_chans)
        if not np.array_equal(old, clip_spike_rate(clips, sfreq)):
            raise RuntimeError(f"the detector's rates changed at {sfreq=:g}")
    load_before_run = os.getloadavg()
    best = best_cpu(fns, repeats)
    per = {name: 1e3 * sec / (n_clips * n_chans) for name, sec in best.items()}
    return dict(
        sfreq=sfreq,
        n_clips=n_clips,
        n_chans=n_chans,
        clip_contacts_with_spikes=int(np.count_nonzero(clip_spike_rate(clips, sfreq))),
        cpu_ms_per_clip_contact={k: round(v, 4) for k, v in per.items()},
        spikes_over_spectra=round(per["spikes"] / per["spectra"], 2),
        # serving at this rate: 720 clips per recording-hour and contact, 128 contacts
        cpu_s_per_recording_hour_128={k: round(v * 720 * 128 / 1e3, 2) for k, v in per.items()},
        speed_up=round(per["spikes_before"] / per["spikes"], 2) if before else None,
        load=[load_before_run, os.getloadavg()],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision of the detector to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--cases", default="500:32:64,1000:32:64,1000:60:128", help="sfreq:n_clips:n_chans,..."
    )
    parser.add_argument("--out", default="benchmarks/results/spike_detector.json")
    args = parser.parse_args(argv)
    before = load_before(args.before) if args.before else None
    results = []
    for case in args.cases.split(","):
        sfreq, n_clips, n_chans = case.split(":")
        row = bench_case(float(sfreq), int(n_clips), int(n_chans), args.repeats, before)
        print(
            f"{row['sfreq']:g} Hz, {row['n_clips']} clips x {row['n_chans']} contacts: CPU ms per "
            f"clip-contact {row['cpu_ms_per_clip_contact']}, spikes/spectra "
            f"{row['spikes_over_spectra']}, speed-up {row['speed_up']}, CPU-s per recording-hour "
            f"x 128 {row['cpu_s_per_recording_hour_128']}, load {row['load']}"
        )
        results.append(row)
    command = "python -m benchmarks.spike_detector " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    write_json(
        args.out, dict(command=command, before=args.before, repeats=args.repeats, cases=results)
    )


if __name__ == "__main__":
    main()
