"""The synthetic SEEG cohort: physiology, labels, BIDS validity, determinism, configuration."""

from __future__ import annotations

from pathlib import Path

import mne
import mne_bids
import numpy as np
import pandas as pd
import pytest
from scipy.signal import butter, sosfiltfilt
from sklearn.metrics import roc_auc_score

from ingest.epileptor import X0_CRITICAL
from ingest.errors import ConfigError
from ingest.simulate import SimulationConfig, plan_subject, simulate_cohort, simulate_cohorts
from tests.cohorts import digest, interictal_only, truth_channels

#: A tiny cohort: 1 subject, 2 short ictal runs and 1 interictal run at 256 Hz.
TINY = SimulationConfig(
    n_subjects=1,
    seed=3,
    n_ictal_runs=2,
    n_interictal_runs=1,
    ictal_duration_s=120.0,
    interictal_duration_s=120.0,
    onset_window_s=(20.0, 30.0),
    sfreqs=(256.0,),
    n_regions=(20, 24),
    n_shafts=(4, 5),
    contacts_per_shaft=(8, 10),
)
SUB = "sim001"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return simulate_cohort(tmp_path_factory.mktemp("sim") / "bids", TINY)


def _truth(root: Path, sub: str = SUB) -> pd.DataFrame:
    return truth_channels(root, sub)


def _regions(root: Path, sub: str = SUB) -> pd.DataFrame:
    path = (
        root / "derivatives" / "sozkit-truth" / f"sub-{sub}" / f"sub-{sub}_desc-truth_regions.tsv"
    )
    return pd.read_csv(path, sep="\t", na_values="n/a")


def _bids_path(root: Path, task: str, run: int) -> mne_bids.BIDSPath:
    return mne_bids.BIDSPath(
        subject=SUB, session="presurgery", task=task, acquisition="seeg", run=f"{run:02d}",
        datatype="ieeg", root=root,
    )  # fmt: skip


def _good_data(
    root: Path, task: str, run: int
) -> tuple[np.ndarray, list[str], float, pd.DataFrame]:
    bp = _bids_path(root, task, run)
    channels = pd.read_csv(bp.copy().update(suffix="channels", extension=".tsv").fpath, sep="\t")
    good = channels.name[channels.status == "good"].tolist()
    raw = mne.io.read_raw_edf(
        bp.copy().update(suffix="ieeg", extension=".edf").fpath, verbose="error"
    )
    return raw.get_data(picks=good) * 1e6, good, raw.info["sfreq"], channels


def test_bids_reads_back_with_mne_bids(tiny):
    raw = mne_bids.read_raw_bids(_bids_path(tiny, "ictal", 1), verbose="error")
    channels = pd.read_csv(
        _bids_path(tiny, "ictal", 1).update(suffix="channels", extension=".tsv").fpath,
        sep="\t",
        keep_default_na=False,
    )
    assert raw.ch_names == channels.name.tolist()
    assert set(raw.get_channel_types()) == {"seeg"}
    assert raw.info["sfreq"] == 256.0
    assert raw.info["line_freq"] in (50.0, 60.0)
    assert raw.n_times == 120 * 256
    # Non-iEEG leads typed SEEG but marked bad, plus 1-3 bad contacts, like ds004100.
    assert {"C3", "EKG1"} <= set(raw.info["bads"])
    assert 3 <= len(raw.info["bads"]) <= 5
    assert set(channels.status_description) <= {"soz", "resect", "resect,soz", "n/a"}
    assert set(channels.units) == {"µV"}
    assert sorted(raw.annotations.description) == ["sz offset", "sz onset"]
    assert raw.get_montage() is not None
    interictal = _bids_path(tiny, "interictal", 1)
    assert not interictal.copy().update(suffix="events", extension=".tsv").fpath.exists()
    participants = pd.read_csv(tiny / "participants.tsv", sep="\t")
    assert participants.site.tolist() == ["centreA"]


def test_cohort_reader_finds_every_run(tiny):
    sources = pytest.importorskip("ingest.sources")
    scan = sources.scan_source(tiny)
    assert len(scan.recordings) == 3 and not scan.problems
    truth = _truth(tiny)
    for rec in scan.recordings:
        assert rec.soz == frozenset(truth.name[truth.soz_label == 1])
        assert rec.resected == frozenset(truth.name[truth.resected == 1])
        assert rec.is_ictal == (rec.task == "ictal")
        assert rec.line_freq == 60.0


def test_edf_neither_clips_nor_quantises_above_the_noise(tiny):
    import edfio

    edf = edfio.read_edf(_bids_path(tiny, "ictal", 1).update(suffix="ieeg", extension=".edf").fpath)
    for sig in edf.signals:
        lo, hi = sig.physical_min, sig.physical_max
        x = sig.data
        assert sig.physical_dimension == "uV"
        assert np.max(np.abs(x)) < hi and lo == -hi
        step = (hi - lo) / 65535
        assert step < 0.05 * np.std(np.diff(x)), sig.label


def test_seizures_start_in_the_epileptogenic_zone_and_spread(tiny):
    regions = _regions(tiny)
    ez, pz = regions[regions.role == "ez"], regions[regions.role == "pz"]
    assert (ez.x0_ictal > X0_CRITICAL).all() and (pz.x0_ictal < X0_CRITICAL).all()
    for run in (1, 2):
        col = f"run-{run:02d}_onset_s"
        onsets = regions[col]
        assert onsets[ez.index].notna().all()
        first_ez = onsets[ez.index].min()
        assert first_ez == onsets.min()  # nothing seizes before the EZ
        recruited = onsets[pz.index].dropna()
        assert len(recruited) >= 1 and (recruited > first_ez).all()  # it spreads
        assert onsets[regions.role == "healthy"].notna().mean() < 0.5
        events = pd.read_csv(
            _bids_path(tiny, "ictal", run).update(suffix="events", extension=".tsv").fpath, sep="\t"
        )
        assert events.trial_type.tolist() == ["sz onset", "sz offset"]
        assert events.onset[0] == pytest.approx(first_ez)
        assert events["sample"][0] == round(first_ez * 256)
        assert 20.0 <= events.onset[0] <= 30.0
        assert events.onset[1] + TINY.min_postictal_s <= TINY.ictal_duration_s


def test_soz_contacts_show_more_line_length_and_fast_activity_at_onset(tiny):
    truth = _truth(tiny).set_index("name")
    lines, fast = [], []
    for run in (1, 2):
        x, good, sfreq, _ = _good_data(tiny, "ictal", run)
        events = pd.read_csv(
            _bids_path(tiny, "ictal", run).update(suffix="events", extension=".tsv").fpath, sep="\t"
        )
        on = int(events.onset[0] * sfreq)
        ictal, pre = x[:, on : on + int(10 * sfreq)], x[:, on - int(20 * sfreq) : on]
        y = truth.loc[good, "soz_true"].to_numpy()
        ll = np.abs(np.diff(ictal)).mean(1) / np.abs(np.diff(pre)).mean(1)
        sos = butter(4, [70.0, 110.0], "bandpass", fs=sfreq, output="sos")
        hf = np.mean(sosfiltfilt(sos, ictal) ** 2, 1) / np.mean(sosfiltfilt(sos, pre) ** 2, 1)
        lines.append(roc_auc_score(y, ll))
        fast.append(roc_auc_score(y, hf))
        assert np.median(ll[y == 1]) > 1.25 * np.median(ll[y == 0])
    assert np.mean(lines) > 0.75, lines
    assert np.mean(fast) > 0.75, fast


def test_interictal_spikes_are_more_frequent_on_soz_contacts(tiny):
    truth = _truth(tiny).set_index("name")
    x, good, sfreq, _ = _good_data(tiny, "interictal", 1)
    sos = butter(4, [10.0, 60.0], "bandpass", fs=sfreq, output="sos")
    xf = sosfiltfilt(sos, x)
    mad = np.median(np.abs(xf), axis=1, keepdims=True)
    over = np.abs(xf) > 8 * mad
    # Count threshold crossings, at most one per 200 ms.
    counts = []
    for row in over:
        idx = np.flatnonzero(row)
        counts.append(0 if idx.size == 0 else 1 + np.sum(np.diff(idx) > 0.2 * sfreq))
    counts = np.asarray(counts)
    y = truth.loc[good, "soz_true"].to_numpy().astype(bool)
    assert counts[y].mean() > 2 * counts[~y].mean()
    events = pd.read_csv(
        tiny / "derivatives" / "sozkit-truth" / f"sub-{SUB}"
        / f"sub-{SUB}_ses-presurgery_task-interictal_acq-seeg_run-01_desc-truth_events.tsv", sep="\t",
    )  # fmt: skip
    spikes = events[events.trial_type == "interictal spike"].channel.str.extract(r"\((\w+)\)")[0]
    regions = _regions(tiny)
    per_region = spikes.value_counts() / regions.role.value_counts()
    assert per_region["ez"] > 3 * per_region.get("healthy", 0.0)


def test_labels_agree_with_truth_like_two_readers():
    cfg = SimulationConfig(n_subjects=40)
    seqs = np.random.SeedSequence(11).spawn(40)
    dice, fraction = [], []
    for i, seq in enumerate(seqs):
        s = plan_subject(i, cfg, np.random.default_rng(seq))
        true, label = s.soz_true, s.soz_label
        dice.append(2 * np.sum(true & label) / (true.sum() + label.sum()))
        fraction.append(true.mean())
        assert np.all(s.resected[label])  # resection covers the clinical SOZ
    assert 0.72 <= np.mean(dice) <= 0.88
    assert min(fraction) >= 0.05 and max(fraction) <= 0.2
    perfect = SimulationConfig(label_agreement=1.0)
    s = plan_subject(0, perfect, np.random.default_rng(seqs[0]))
    assert np.array_equal(s.soz_true, s.soz_label)


def test_centres_differ_in_line_frequency_naming_and_rates():
    cfg = SimulationConfig(n_subjects=3)
    subjects = [plan_subject(i, cfg, np.random.default_rng(i)) for i in range(3)]
    assert [s.line_freq for s in subjects] == [60.0, 50.0, 50.0]
    assert all(n[-2] == "0" or n[-2:].isdigit() for n in subjects[0].implantation.names)
    assert any("'" in n for n in subjects[2].implantation.names)  # A'1 prime naming
    assert len(set(subjects[1].implantation.names)) == subjects[1].implantation.n_contacts


def test_same_seed_same_bytes_other_seed_other_signals(tmp_path):
    cfg = interictal_only(n_subjects=1, seed=5)
    a = digest(simulate_cohort(tmp_path / "a", cfg))
    b = digest(simulate_cohort(tmp_path / "b", cfg))
    assert a == b
    other = SimulationConfig(**{**cfg.__dict__, "seed": 6})
    c = digest(simulate_cohort(tmp_path / "c", other))
    edf = [k for k in a if k.endswith(".edf")]
    assert edf and all(a[k] != c[k] for k in edf)


def test_subject_subsets_and_parallel_workers_write_the_same_bytes(tmp_path):
    cfg = interictal_only(n_subjects=3, seed=7)
    whole = simulate_cohort(tmp_path / "whole", cfg, n_jobs=2)
    held_out = simulate_cohort(tmp_path / "held_out", cfg, subjects=[2])
    assert sorted(p.name for p in held_out.glob("sub-*")) == ["sub-sim003"]
    assert digest(held_out / "sub-sim003") == digest(whole / "sub-sim003")
    assert sorted(p.name for p in whole.glob("sub-*")) == ["sub-sim001", "sub-sim002", "sub-sim003"]
    with pytest.raises(ConfigError, match=r"must be non-empty indices in 0\.\.2"):
        simulate_cohort(tmp_path / "bad", cfg, subjects=[3])


def test_one_pool_for_several_datasets_writes_what_separate_calls_write(tmp_path):
    cfg = interictal_only(n_subjects=3, seed=7)
    train, held_out = simulate_cohorts(
        {tmp_path / "train": [0, 1], tmp_path / "held_out": [2]}, cfg, n_jobs=2
    )
    apart = {
        name: simulate_cohort(tmp_path / f"apart_{name}", cfg, subjects=subjects)
        for name, subjects in (("train", [0, 1]), ("held_out", [2]))
    }
    for root, name in ((train, "train"), (held_out, "held_out")):
        assert root == tmp_path / name
        assert digest(root) == digest(apart[name])
    participants = (train / "participants.tsv").read_text()
    assert "sub-sim001" in participants and "sub-sim003" not in participants
    with pytest.raises(ConfigError, match="one dataset only"):
        simulate_cohorts({tmp_path / "a": [0, 1], tmp_path / "b": [1]}, cfg)


def test_small_implants_with_artefacts_on_few_shafts(tmp_path):
    # Seeds 2 and 3 draw movement bursts over more shafts than a 2-shaft implant has.
    cfg = interictal_only(
        n_subjects=3, seed=2, interictal_duration_s=300.0, contacts_per_shaft=(4, 6)
    )
    root = simulate_cohort(tmp_path, cfg)
    assert len(list(root.rglob("*_ieeg.edf"))) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_subjects": 0}, "n_subjects=0 must be >= 1"),
        ({"n_ictal_runs": 0, "n_interictal_runs": 0}, "at least one run"),
        ({"ictal_duration_s": 100.5}, "whole number of seconds"),
        ({"ictal_duration_s": 120.0}, "ictal_duration_s >= 180"),
        ({"sfreqs": (128.0,)}, "each >= 200 Hz"),
        ({"difficulty": 1.5}, r"difficulty=1.5 must be in \[0, 1\]"),
        ({"label_agreement": 0.0}, "label_agreement=0.0"),
        ({"n_shafts": (6, 3)}, r"n_shafts=\(6, 3\) must be a range"),
        ({"n_centres": 4}, "n_centres=4 must be in 1..3"),
        ({"onset_window_s": (50.0, 40.0)}, "onset_window_s"),
    ],
)
def test_config_validation_messages(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SimulationConfig(**kwargs)


def test_cli_simulate(tmp_path, capsys):
    from serving.cli import main

    out = tmp_path / "cohort"
    argv = ["simulate", str(out), "--subjects", "1", "--seed", "2", "--ictal-runs", "0",
            "--interictal-runs", "1", "--interictal-duration", "10", "--sfreqs", "256"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 1 subjects" in capsys.readouterr().out
    assert len(list(out.rglob("*_ieeg.edf"))) == 1
    assert main(["simulate", str(out), "--difficulty", "2"]) == 2
    assert "difficulty=2.0 must be in [0, 1]" in capsys.readouterr().err  # one line, stderr


@pytest.mark.slow
def test_line_length_ranking_is_not_perfect_on_the_default_cohort(tmp_path):
    """The default difficulty is honest: onset line length does not solve every patient."""
    root = simulate_cohort(tmp_path / "default", SimulationConfig())
    aucs = []
    for sub in sorted(p.name[4:] for p in root.glob("sub-*")):
        truth = _truth(root, sub).set_index("name")
        for edf in sorted(root.glob(f"sub-{sub}/ses-presurgery/ieeg/*task-ictal*_ieeg.edf")):
            channels = pd.read_csv(str(edf).replace("_ieeg.edf", "_channels.tsv"), sep="\t")
            events = pd.read_csv(str(edf).replace("_ieeg.edf", "_events.tsv"), sep="\t")
            good = channels.name[channels.status == "good"].tolist()
            raw = mne.io.read_raw_edf(edf, verbose="error")
            sfreq = raw.info["sfreq"]
            on = int(events.onset[0] * sfreq)
            x = raw.get_data(picks=good, start=on, stop=on + int(10 * sfreq))
            ll = np.abs(np.diff(x)).mean(1)
            aucs.append(roc_auc_score(truth.loc[good, "soz_true"], ll))
    aucs = np.asarray(aucs)
    assert np.mean(aucs == 1.0) < 0.5, aucs  # not every patient/run right
    assert np.mean(aucs) > 0.55, aucs  # but informative: a model can do better
