"""The second generator family (Wendling): its model regimes, BIDS the readers take, SOZ seizures,
determinism, and independence from the default family."""

from __future__ import annotations

import json
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from scipy.signal import butter, sosfiltfilt

from ingest.errors import ConfigError
from ingest.implant import Implantation
from ingest.recording import shaft_of
from ingest.simulate import SimulationConfig, simulate_cohort
from ingest.sources import scan_source
from ingest.wendling import (
    BACKGROUND,
    FAST_ONSET,
    RHYTHMIC_SPIKES,
    WendlingParams,
    seizure_schedule,
    simulate_network,
)
from ingest.wendling_cohort import apply_montage, knee_noise
from tests.cohorts import digest, interictal_only, truth_channels

#: Three subjects (sites D and E: bipolar montages; F: a white-matter reference), one ictal and one interictal run, at 512 Hz.
TINY = SimulationConfig(
    n_subjects=3,
    seed=4,
    n_ictal_runs=1,
    n_interictal_runs=1,
    ictal_duration_s=120.0,
    interictal_duration_s=30.0,
    onset_window_s=(20.0, 25.0),
    sfreqs=(512.0,),
    n_regions=(12, 14),
    n_shafts=(3, 4),
    contacts_per_shaft=(6, 8),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return simulate_cohort(tmp_path_factory.mktemp("wendling") / "bids", TINY, generator="wendling")


def test_model_regimes_background_spikes_and_fast_onset():
    """The parameter sets give the paper's activity types: quiet background, large rhythmic
    spikes (~4 Hz) and low-voltage fast activity (> 15 Hz)."""
    sets = np.array([BACKGROUND, RHYTHMIC_SPIKES, FAST_ONSET]).T  # (3, 3 regions)
    lfp = simulate_network(
        lambda t: np.broadcast_to(sets[:, None, :, None], (3, 1, 3, t.size)),
        1,
        5000,
        np.zeros((3, 3)),
        params=WendlingParams(coupling=0.0),
        rng=np.random.default_rng(0),
    )[0]
    spectra = np.abs(np.fft.rfft(lfp - lfp.mean(axis=1, keepdims=True), axis=1)) ** 2
    freqs = np.fft.rfftfreq(lfp.shape[1], 1 / 500.0)
    peak = freqs[1 + np.argmax(spectra[:, 1:], axis=1)]
    std = lfp.std(axis=1)
    assert std[1] > 10 * std[0]  # spikes dwarf the background
    assert 2.5 < peak[1] < 7.0
    assert peak[2] > 15.0 and std[2] < std[1] / 5  # fast and low-voltage


def test_schedule_moves_only_seizing_regions_through_the_types():
    base = np.array([[3.5, 3.5], [30.0, 30.0], [18.0, 18.0]])
    t = np.arange(0, 60, 0.5)
    g = seizure_schedule(t, base, np.array([[10.0, np.nan]]), np.array([[30.0, 0.0]]),
                         np.array([[5.0, 0.0]]))  # fmt: skip
    assert g.shape == (3, 1, 2, t.size)
    assert np.all(g[:, 0, 1] == base[:, 1:2])  # NaN onset: never seizes
    assert np.allclose(g[:, 0, 0, t == 13.0].ravel(), FAST_ONSET)  # fast phase after the ramp
    assert np.allclose(g[:, 0, 0, t == 5.0].ravel(), base[:, 0])  # rest before onset
    assert np.allclose(g[:, 0, 0, -1], base[:, 0])  # back to rest after the offset


def test_bipolar_montage_names_shafts_and_midpoints():
    contacts = Implantation(
        names=("HL1", "HL2", "HL3", "AR1", "AR2"),
        shafts=("HL", "HL", "HL", "AR", "AR"),
        positions=np.arange(15, dtype=float).reshape(5, 3),
    )
    chans, m = apply_montage(contacts, "bipolar")
    assert chans.names == ("HL1-HL2", "HL2-HL3", "AR1-AR2")  # never across shafts
    assert [shaft_of(n) for n in chans.names] == ["HL", "HL", "AR"]
    assert np.allclose(m @ np.arange(5.0), -1.0)
    assert np.allclose(chans.positions[0], contacts.positions[:2].mean(axis=0))
    _, avg = apply_montage(contacts, "average")
    assert np.allclose(avg @ np.ones(5), 0.0)
    ref, m = apply_montage(contacts, "reference", reference=2)
    assert ref.names == ("HL1", "HL2", "AR1", "AR2")
    assert np.allclose(m @ np.arange(5.0), np.array([0, 1, 3, 4]) - 2.0)
    with pytest.raises(ValueError, match="montage"):
        apply_montage(contacts, "laplacian")


def test_knee_noise_is_flat_below_and_steep_above_the_knee():
    x = knee_noise(4, 2**15, 500.0, np.full(4, 10.0), rng=np.random.default_rng(1))
    p = (np.abs(np.fft.rfft(x, axis=1)) ** 2).mean(axis=0)
    f = np.fft.rfftfreq(x.shape[1], 1 / 500.0)
    band = lambda lo, hi: p[(f >= lo) & (f < hi)].mean()  # noqa: E731
    assert 0.5 < band(1, 2) / band(3, 4) < 2.0  # flat well below the knee
    assert 8 < band(20, 22) / band(80, 88) < 20  # (100 + 84^2) / (100 + 21^2) = 13
    assert x.dtype == np.float32 and np.allclose(x.std(axis=1), 1.0, atol=1e-3)


def test_readers_take_the_family_unchanged(tiny):
    scan = scan_source(tiny)
    assert not scan.problems, scan.problems
    recs = scan.recordings
    assert len(recs) == 6
    assert not any(r.warnings for r in recs), [r.warnings for r in recs]
    sites = {r.subject: r.centre for r in recs}
    assert sites == {"sim001": "siteD", "sim002": "siteE", "sim003": "siteF"}
    by_sub = {r.subject: r for r in recs if r.task == "ictal"}
    # bipolar at sites D and E, a reference contact at F; each with its own naming habit
    assert all("-" in c for c in by_sub["sim001"].contacts)
    assert all("'" in c or "-" in c for c in by_sub["sim002"].contacts)
    assert not any("-" in c for c in by_sub["sim003"].contacts)
    line = {r.subject: r.line_freq for r in recs}
    assert line["sim001"] == 60.0 and line["sim002"] == 50.0
    description = json.loads((tiny / "dataset_description.json").read_text("utf-8"))
    assert "Wendling" in description["Name"]
    for sub, rec in by_sub.items():
        truth = truth_channels(tiny, sub)
        labelled = set(truth.loc[truth["soz_label"] == 1, "name"]) & set(rec.contacts)
        assert labelled and set(rec.soz) & set(rec.contacts) == labelled
        assert len(rec.seizures) == 1


def test_soz_channels_carry_the_seizure(tiny):
    """After the onset, the true SOZ channels gain more 1-40 Hz power than the other channels."""
    for sub in ("sim001", "sim002", "sim003"):
        ieeg = tiny / f"sub-{sub}" / "ses-presurgery" / "ieeg"
        stem = f"sub-{sub}_ses-presurgery_task-ictal_acq-seeg_run-01"
        raw = mne.io.read_raw_edf(ieeg / f"{stem}_ieeg.edf", preload=True, verbose="error")
        events = pd.read_csv(ieeg / f"{stem}_events.tsv", sep="\t")
        onset = float(events.loc[events["trial_type"] == "sz onset", "onset"].iloc[0])
        truth = truth_channels(tiny, sub).set_index("name")
        chans = pd.read_csv(ieeg / f"{stem}_channels.tsv", sep="\t")
        good = [n for n in chans.loc[chans["status"] == "good", "name"] if n in truth.index]
        sf = raw.info["sfreq"]
        x = raw.get_data(picks=good) * 1e6
        x = sosfiltfilt(butter(4, [1.0, 40.0], btype="band", fs=sf, output="sos"), x)
        pre = x[:, int((onset - 15) * sf) : int((onset - 1) * sf)].std(axis=1)
        ictal = x[:, int(onset * sf) : int((onset + 25) * sf)].std(axis=1)
        gain = np.log(ictal / pre)
        soz = truth.loc[good, "soz_true"].to_numpy(bool)
        assert soz.any() and (~soz).any()
        assert np.median(gain[soz]) > np.median(gain[~soz]) + 0.3, sub


def test_same_seed_same_bytes_and_independent_of_the_default_family(tmp_path):
    cfg = interictal_only(n_subjects=1, seed=5, sfreqs=(512.0,))
    a = digest(simulate_cohort(tmp_path / "a", cfg, generator="wendling"))
    b = digest(simulate_cohort(tmp_path / "b", cfg, generator="wendling"))
    assert a == b
    c = digest(simulate_cohort(tmp_path / "c", SimulationConfig(**{**cfg.__dict__, "seed": 6}),
                                generator="wendling"))  # fmt: skip
    edf = [k for k in a if k.endswith(".edf")]
    assert edf and all(a[k] != c[k] for k in edf)
    default = digest(simulate_cohort(tmp_path / "d", cfg))
    assert all(a[k] != default.get(k) for k in edf)
    with pytest.raises(ConfigError, match="generator"):
        simulate_cohort(tmp_path / "e", cfg, generator="tvb")


def test_cli_generator_flag(tmp_path, capsys):
    from serving.cli import main

    out = tmp_path / "cli"
    rc = main(["simulate", str(out), "--subjects", "1", "--generator", "wendling",
               "--ictal-runs", "0", "--interictal-duration", "20", "--sfreqs", "512"])  # fmt: skip
    assert rc == 0
    assert "wendling" in capsys.readouterr().out
    assert (out / "participants.tsv").read_text("utf-8").count("siteD") == 1
