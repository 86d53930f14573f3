"""The second simulator family: Wendling neural masses seen through another implant and lead field.

``simulate_cohort(generator="wendling")`` (``soz simulate --generator wendling``) writes the same
BIDS layout as the default Epileptor family (:mod:`ingest.simulate`), so ``soz ingest`` reads it
unchanged, but every part that makes a site look like itself is drawn differently, so that a
model trained on one family and tested on the other measures domain shift:

==================  ===============================  =========================================
part                Epileptor family (default)       this family
==================  ===============================  =========================================
neural mass         Epileptor network (slow z)       Wendling 2002 populations, gain schedules
interictal spikes   templates added at a rate        emerge from the model (A near threshold)
geometry            regions in an ellipsoid,         regions on a cortical shell, k-nearest
                    distance-decaying connectome     + long-range connectome
lead field          inverse-square, 5 mm radius      exponential, 5-8 mm length, far field
implant             3.5 mm pitch, LA01 / LA1 / A'1   4-5 mm pitch, HL1 / H'01 / LH1
montage             referential                      bipolar (sites D, E), white-matter ref (F)
noise               1/f background + white           Lorentzian "knee" spectrum per contact
line noise          fundamental + 1 harmonic         3 harmonics, slowly modulated amplitude
artefacts           movement bursts, flat segments   electrode slips, chewing EMG, saturation
rates / centres     A-C, 256-2048 Hz                 D-F, 400-2000 Hz (2000, 600, 400 Hz too)
==================  ===============================  =========================================

The truth: a channel is in the true SOZ when its (montage) lead field is dominated by the EZ,
with the same label corruption and resection rules as the default family
(:mod:`ingest.sim_truth`). The truth files under ``derivatives/sozkit-truth`` have the same
columns; ``x0_rest`` / ``x0_ictal`` there hold the resting and ictal excitatory gain ``A``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ingest import waveforms as wf
from ingest.bids_writer import RunData, SubjectData
from ingest.fileio import write_json, write_text
from ingest.implant import BRAIN_SEMI_AXES, Anatomy, Implantation, implant
from ingest.sim_config import SimulationConfig
from ingest.sim_truth import clinical_labels, draw_targets, draw_zones
from ingest.wendling import FAST_ONSET, WendlingParams, seizure_schedule, simulate_network

logger = logging.getLogger(__name__)

#: Mixed into the master seed so that the same ``--seed`` gives independent families.
SEED_TAG = 0x57454E44
#: Centres of this family: (site, line frequency, naming style, montage, pitch mm, rates).
CENTRES = (
    ("siteD", 60.0, "suffix", "bipolar", 5.0, (2000.0, 1000.0, 512.0)),
    ("siteE", 50.0, "prime_padded", "bipolar", 4.5, (1024.0, 2048.0, 600.0)),
    ("siteF", 50.0, "plain", "reference", 4.0, (400.0, 1000.0, 512.0)),
)
#: Model output to microvolts at the region (mV of pyramidal potential -> uV of field).
UV_PER_MV = (40.0, 60.0)


def subject_runs(
    index: int,
    cfg: SimulationConfig,
    plan_rng: np.random.Generator,
    model_rng: np.random.Generator,
    run_rngs: Sequence[np.random.Generator],
) -> tuple[SubjectData, Iterator[RunData]]:
    """This family's subject and its runs (:func:`ingest.simulate.subject_runs`'s contract):
    every run's region sources integrated together, each run's channels made as iterated."""
    subject, montage, lead = plan_subject(index, cfg, plan_rng)
    tasks = ["ictal"] * cfg.n_ictal_runs + ["interictal"] * cfg.n_interictal_runs
    runs = [k + 1 for k in range(cfg.n_ictal_runs)] + [k + 1 for k in range(cfg.n_interictal_runs)]
    sources = _region_sources(subject, cfg, tasks, model_rng)

    def made() -> Iterator[RunData]:
        for task, run, (src, onsets, offsets), rng in zip(
            tasks, runs, sources, run_rngs, strict=True
        ):
            yield synthesize_run(subject, montage, lead, task, run, src, onsets, offsets, rng)

    return subject, made()


def plan_subject(
    index: int, cfg: SimulationConfig, rng: np.random.Generator
) -> tuple[SubjectData, np.ndarray, np.ndarray]:
    """Draw one subject: centre, anatomy, EZ/PZ, implant, montage, truth and clinical labels.

    Returns
    -------
    subject : SubjectData
        ``implantation`` and ``gain`` describe the recorded *channels* (after the montage).
    montage : ndarray, shape (n_channels, n_contacts)
        Channel = ``montage @ contacts``.
    lead : ndarray, shape (n_contacts, n_regions)
        Monopolar gain of each region at each contact (lead field times the contact's gain).
    """
    d = cfg.difficulty
    site, line_freq, naming, montage_kind, pitch, preferred = CENTRES[index % cfg.n_centres]
    sfreq = float(rng.choice(_rates(cfg, preferred)))
    anatomy = _anatomy(int(rng.integers(cfg.n_regions[0], cfg.n_regions[1] + 1)), rng)
    n = anatomy.n_regions
    ez, pz, role = draw_zones(anatomy.weights, d, rng, pair_p=0.4, n_pz=(2, 5))
    # Resting excitatory gain: the EZ sits just above the sporadic-spike threshold (A ~ 4.3),
    # the PZ below it (closer with difficulty), healthy regions in the background regime.
    a_rest = rng.uniform(3.3, 3.8, n)
    a_rest[pz] = rng.uniform(3.7, 3.9, len(pz)) + 0.15 * d
    a_rest[ez] = rng.uniform(4.26, 4.31, len(ez)) - 0.02 * d
    a_ictal = a_rest.copy()
    a_ictal[ez + pz] = FAST_ONSET[0]

    targets, counts = draw_targets(anatomy.positions, ez, pz, cfg, rng, same_side=2.0)
    # This family's shafts: its own pitch, a tighter tip and a steeper tilt.
    contacts = implant(
        anatomy,
        targets,
        counts,
        naming=naming,
        rng=rng,
        pitch_mm=pitch,
        tip_sd_mm=1.5,
        tilt_sd=0.5,
        tilt_axes=(0.2, 1.0, 1.0),
    )
    contact_gain = rng.lognormal(0.0, 0.25, contacts.n_contacts)
    lead = lead_field(contacts.positions, anatomy.positions, rng=rng) * contact_gain[:, None]
    # A referential site records against its quietest contact (a white-matter reference).
    quiet = int(np.argmin(lead.sum(axis=1)))
    channels, montage = apply_montage(contacts, montage_kind, reference=quiet)
    gain = montage @ lead  # (n_channels, n_regions)

    soz_true, soz_label, resected = clinical_labels(np.abs(gain), ez, channels, cfg.agreement, rng)
    subject = SubjectData(
        subject=f"sim{index + 1:03d}",
        site=site,
        line_freq=line_freq,
        naming=naming,
        sfreq=sfreq,
        anatomy=anatomy,
        implantation=channels,
        gain=np.abs(gain),
        role=tuple(role),
        x0_rest=a_rest,
        x0_ictal=a_ictal,
        soz_true=soz_true,
        soz_label=soz_label,
        resected=resected,
        age=int(rng.integers(16, 65)),
        sex=str(rng.choice(["F", "M"])),
        hand=str(rng.choice(["R", "R", "L"])),
        contact_gain=contact_gain,
        contact_exponent=rng.uniform(4.0, 14.0, contacts.n_contacts),  # knee frequency (Hz)
        line_amp=rng.lognormal(np.log(5.0), 0.8, channels.n_contacts),
        difficulty=d,
    )
    return subject, montage, lead


def lead_field(
    contacts: np.ndarray,
    regions: np.ndarray,
    *,
    rng: np.random.Generator,
    length_mm: tuple[float, float] = (5.0, 8.0),
    far_field: float = 0.04,
) -> np.ndarray:
    """Exponential volume conduction with a weak far field: ``exp(-d / L) + f * 10 / (d + 10)``.

    ``L`` is drawn per region (tissue and source size differ), so the gain falls faster than
    the inverse-square field of the default family near a source and flattens far from it.

    Parameters
    ----------
    contacts : ndarray, shape (n_contacts, 3)
    regions : ndarray, shape (n_regions, 3)
    rng : numpy.random.Generator
    length_mm : tuple of float
        Range of the decay length.
    far_field : float
        Amplitude of the far-field term.

    Returns
    -------
    gain : ndarray, shape (n_contacts, n_regions)
    """
    dist = np.linalg.norm(contacts[:, None, :] - regions[None, :, :], axis=-1)
    length = rng.uniform(*length_mm, regions.shape[0])[None, :]
    return np.exp(-dist / length) + far_field * 10.0 / (dist + 10.0)


def apply_montage(
    contacts: Implantation, kind: str, *, reference: int | None = None
) -> tuple[Implantation, np.ndarray]:
    """Channels of a montage: bipolar, common average, or one reference contact.

    Parameters
    ----------
    contacts : Implantation
        The physical contacts, shaft by shaft, deepest first.
    kind : str
        ``"bipolar"``: channel ``HL1-HL2`` = contact 1 - contact 2 at their midpoint;
        ``"average"``: each contact minus the mean of all contacts;
        ``"reference"``: each contact minus contact ``reference`` (which is not a channel).
    reference : int or None
        The reference contact of ``"reference"``.

    Returns
    -------
    channels : Implantation
        Names, shafts and positions of the channels.
    montage : ndarray, shape (n_channels, n_contacts)
    """
    n = contacts.n_contacts
    if kind == "average":
        return contacts, np.eye(n) - np.full((n, n), 1.0 / n)
    if kind == "reference":
        if reference is None or not 0 <= reference < n:
            raise ValueError(
                f"montage 'reference' needs a contact index in 0..{n - 1}: {reference=}."
            )
        keep = [c for c in range(n) if c != reference]
        m = np.eye(n)[keep]
        m[:, reference] = -1.0
        channels = Implantation(
            names=tuple(contacts.names[c] for c in keep),
            shafts=tuple(contacts.shafts[c] for c in keep),
            positions=contacts.positions[keep],
        )
        return channels, m
    if kind != "bipolar":
        raise ValueError(f"montage {kind=} must be 'bipolar', 'average' or 'reference'.")
    rows, names, shafts, pos = [], [], [], []
    for c in range(n - 1):
        if contacts.shafts[c] != contacts.shafts[c + 1]:
            continue
        row = np.zeros(n)
        row[c], row[c + 1] = 1.0, -1.0
        rows.append(row)
        names.append(f"{contacts.names[c]}-{contacts.names[c + 1]}")
        shafts.append(contacts.shafts[c])
        pos.append(0.5 * (contacts.positions[c] + contacts.positions[c + 1]))
    channels = Implantation(names=tuple(names), shafts=tuple(shafts), positions=np.asarray(pos))
    return channels, np.asarray(rows)


def knee_noise(
    n_signals: int, n_times: int, sfreq: float, knee_hz: np.ndarray, *, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian noise with a Lorentzian spectrum ``1 / (knee**2 + f**2)``, unit std, float32.

    Flat below the knee and ``1 / f**2`` above it (the "knee" of intracranial background),
    unlike the power law of the default family.

    Returns
    -------
    noise : ndarray, shape (n_signals, n_times), float32
    """
    knee = np.broadcast_to(np.asarray(knee_hz, dtype=float), (n_signals,))

    def lorentzian(spec: np.ndarray, freqs: np.ndarray, rows: slice) -> None:
        spec /= np.sqrt(knee[rows, None] ** 2 + freqs[None, :] ** 2)

    return wf.shaped_noise(n_signals, n_times, sfreq, lorentzian, rng=rng)


def synthesize_run(
    subject: SubjectData,
    montage: np.ndarray,
    lead: np.ndarray,
    task: str,
    run: int,
    src: np.ndarray,
    onsets: np.ndarray | None,
    offsets: np.ndarray | None,
    rng: np.random.Generator,
) -> RunData:
    """Channels of one run in µV, shape (n_channels + 2, n_times), from the region sources."""
    sfreq = subject.sfreq
    n_times = src.shape[1]
    n_contacts = montage.shape[1]
    chans = subject.implantation
    n_ch = chans.n_contacts
    truth: list[tuple[float, str, str]] = []
    # Contacts: lead field of the regions + local knee noise + amplifier noise, then the montage.
    local = knee_noise(n_contacts, n_times, sfreq, subject.contact_exponent, rng=rng)
    local *= np.float32(6.0 * (1 + subject.difficulty))
    local += rng.standard_normal((n_contacts, n_times), dtype=np.float32) * np.float32(3.0)
    data = np.empty((n_ch + 2, n_times), dtype=np.float32)
    data[:n_ch] = (montage @ lead).astype(np.float32) @ src
    data[:n_ch] += montage.astype(np.float32) @ local
    del local
    data[n_ch] = 20.0 * knee_noise(1, n_times, sfreq, np.array([3.0]), rng=rng)[0]
    data[n_ch + 1] = wf.ecg(n_times, sfreq, rng=rng)
    line_amp = np.concatenate([subject.line_amp, rng.uniform(5, 40, 2)])

    n_bad = int(rng.integers(1, 4))
    bad_idx = rng.choice(n_ch, n_bad, replace=False)
    for c in bad_idx:
        kind = str(rng.choice(["noisy", "saturated", "flat"]))
        if kind == "noisy":
            data[c] += rng.standard_normal(n_times).astype(np.float32) * rng.uniform(150, 400)
        elif kind == "saturated":
            rail = rng.uniform(40, 120)
            data[c] = np.clip(data[c] * 6.0 + rng.uniform(-rail, rail), -rail, rail)
        else:
            data[c] = rng.uniform(-20, 20) + rng.standard_normal(n_times).astype(np.float32) * 0.3
        truth.append((0.0, f"bad {kind}", chans.names[c]))
    data += _line_noise(n_times, sfreq, subject.line_freq, line_amp, rng)
    _add_artefacts(data[:n_ch], chans, sfreq, rng, truth)

    events = []
    if onsets is not None:
        seized = np.isfinite(onsets)
        for r in np.flatnonzero(seized):
            truth.append((float(onsets[r]), "region onset", f"region-{r:02d} ({subject.role[r]})"))
        events = [
            (float(np.nanmin(onsets)), "sz onset", 2),
            (float(np.nanmax(offsets)), "sz offset", 1),
        ]
    return RunData(
        task=task,
        run=run,
        sfreq=sfreq,
        names=tuple(chans.names) + ("Fz", "ECG"),
        data=data,
        bad=frozenset({chans.names[c] for c in bad_idx} | {"Fz", "ECG"}),
        events=tuple(events),
        truth_events=tuple(sorted(truth)),
        region_onsets=onsets,
        region_offsets=offsets,
    )


def describe_dataset(root: Path, cfg) -> None:
    """Overwrite the dataset description and README with this family's name and settings."""
    config = {"generator": "wendling", **json.loads(json.dumps(asdict(cfg), default=str))}
    write_json(
        root / "dataset_description.json",
        {
            "Name": "sozkit synthetic SEEG cohort (Wendling family)",
            "BIDSVersion": "1.8.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["sozkit simulator"],
            "GeneratedBy": [
                {"Name": "sozkit.ingest.wendling_cohort", "Description": json.dumps(config)}
            ],
        },
    )
    write_text(
        root / "README",
        "Synthetic stereo-EEG cohort (Wendling neural masses, exponential lead field, bipolar "
        "and white-matter-referenced montages), written with the conventions of OpenNeuro ds004100. "
        "Clinical SOZ / resection labels are in channels.tsv status_description; the true onset "
        "channels are in derivatives/sozkit-truth (x0_rest / x0_ictal there: the excitatory "
        "gain A at rest and in seizure).\n",
    )


# --------------------------------------------------------------------------- internals


def _rates(cfg, preferred: tuple[float, ...]) -> list[float]:
    """The centre's own rates, unless the configuration asks for other rates."""
    if tuple(cfg.sfreqs) == SimulationConfig.__dataclass_fields__["sfreqs"].default:
        return list(preferred)
    return [s for s in cfg.sfreqs if s in preferred] or list(cfg.sfreqs)


def _anatomy(n_regions: int, rng: np.random.Generator) -> Anatomy:
    """Regions on a cortical shell (0.6-0.85 of the brain radii); k-nearest + long-range links."""
    pts: list[np.ndarray] = []
    min_d = 12.0
    tries = 0
    while len(pts) < n_regions:
        tries += 1
        if tries % 2000 == 0:
            min_d *= 0.9
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        p = u * rng.uniform(0.6, 0.85) * BRAIN_SEMI_AXES
        if abs(p[0]) < 10.0 or (
            pts and np.min(np.linalg.norm(np.asarray(pts) - p, axis=1)) < min_d
        ):
            continue
        pts.append(p)
    pos = np.asarray(pts)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    w = np.zeros((n_regions, n_regions))
    for i in range(n_regions):
        for j in np.argsort(dist[i])[:4]:
            w[i, j] = w[j, i] = max(w[i, j], 12.0 / dist[i, j])
    for _ in range(n_regions // 3):  # a few long-range links
        i, j = rng.choice(n_regions, 2, replace=False)
        w[i, j] = w[j, i] = rng.uniform(0.1, 0.3)
    w *= rng.uniform(0.7, 1.3, w.shape)
    w = 0.5 * (w + w.T)
    np.fill_diagonal(w, 0.0)
    w /= w.sum(axis=1).max()
    return Anatomy(positions=pos, weights=w)


def _region_sources(subject: SubjectData, cfg, tasks: list[str], rng: np.random.Generator):
    """Integrate every run of a subject together; returns (src µV at sfreq, onsets, offsets)."""
    params = WendlingParams(coupling=10.0 + 15.0 * cfg.difficulty)
    n = subject.anatomy.n_regions
    roles = np.asarray(subject.role)
    durations = [cfg.ictal_duration_s if t == "ictal" else cfg.interictal_duration_s for t in tasks]
    n_steps = int(round(max(durations) * params.sfreq))
    onsets = np.full((len(tasks), n), np.nan)
    lengths = np.zeros((len(tasks), n))
    fast = np.zeros((len(tasks), n))
    lo, hi = cfg.onset_window_s
    d = cfg.difficulty
    for k, task in enumerate(tasks):
        if task != "ictal":
            continue
        on = rng.uniform(lo, hi)
        dur = rng.uniform(25.0, 50.0)
        for r in np.flatnonzero(roles == "ez"):
            onsets[k, r] = on + rng.uniform(0.0, 1.0)
            lengths[k, r] = dur
            fast[k, r] = rng.uniform(3.0, 7.0) * (1.2 - 0.5 * d)
        for r in np.flatnonzero(roles == "pz"):
            if rng.random() < 0.85:
                delay = rng.uniform(4.0, 15.0) * (1.2 - 0.6 * d)
                onsets[k, r] = on + delay
                lengths[k, r] = max(8.0, dur - delay + rng.uniform(-4.0, 4.0))
                fast[k, r] = rng.uniform(0.0, 3.0) * d
    base = np.stack([subject.x0_rest, np.full(n, 30.0), np.full(n, 18.0)])

    def schedule(t: np.ndarray) -> np.ndarray:
        return seizure_schedule(t, base, onsets, lengths, fast)

    lfp = simulate_network(
        schedule, len(tasks), n_steps, subject.anatomy.weights, params=params, rng=rng
    )
    scale = rng.uniform(*UV_PER_MV, n)[:, None]
    ratio = Fraction(subject.sfreq / params.sfreq).limit_denominator(1000)
    out = []
    for k, dur_s in enumerate(durations):
        x = lfp[k, :, : int(round(dur_s * params.sfreq))].astype(np.float64)
        x -= np.median(x[:, : int(5 * params.sfreq)], axis=1, keepdims=True)
        x = resample_poly(x * scale, ratio.numerator, ratio.denominator, axis=1)
        n_times = int(round(dur_s * subject.sfreq))
        src = np.zeros((n, n_times), dtype=np.float32)
        src[:, : min(n_times, x.shape[1])] = x[:, :n_times]
        src += 10.0 * knee_noise(n, n_times, subject.sfreq, rng.uniform(5.0, 12.0, n), rng=rng)
        if tasks[k] == "ictal":
            out.append(
                (src, onsets[k], np.where(np.isfinite(onsets[k]), onsets[k] + lengths[k], np.nan))
            )
        else:
            out.append((src, None, None))
    return out


def _line_noise(n_times, sfreq, line_freq, amps, rng) -> np.ndarray:
    """Mains at 3 harmonics (1, 0.2, 0.1) with a slowly modulated amplitude, (n_signals, n_times)."""
    t = np.arange(n_times) / sfreq
    envelope = 1.0 + 0.3 * np.sin(2 * np.pi * t / rng.uniform(20, 60) + rng.uniform(0, 6.3))
    out = np.zeros((amps.size, n_times), dtype=np.float32)
    for h, ratio in ((1, 1.0), (2, 0.2), (3, 0.1)):
        if h * line_freq >= 0.45 * sfreq:
            break
        phase = rng.uniform(0, 2 * np.pi, amps.size)[:, None]
        wave = np.sin(2 * np.pi * h * line_freq * t[None, :] + phase) * envelope
        out += (ratio * amps[:, None] * wave).astype(np.float32)
    return out


def _add_artefacts(data, chans: Implantation, sfreq, rng, truth) -> None:
    """Electrode slips (decaying steps on a shaft) and chewing EMG on lateral channels (in place)."""
    n_ch, n_times = data.shape
    shafts = np.asarray(chans.shafts)
    names = sorted(set(chans.shafts))
    minutes = n_times / sfreq / 60.0
    for _ in range(rng.poisson(0.4 * minutes)):
        shaft = str(rng.choice(names))
        start = int(rng.integers(0, n_times))
        tau = rng.uniform(0.5, 3.0) * sfreq
        step = np.exp(-np.arange(n_times - start) / tau).astype(np.float32)
        for c in np.flatnonzero(shafts == shaft):
            data[c, start:] += step * rng.uniform(80, 400) * rng.choice([-1, 1])
        truth.append((start / sfreq, "electrode slip", shaft))
    for _ in range(rng.poisson(0.6 * minutes)):
        n = int(rng.uniform(0.8, 2.5) * sfreq)
        start = int(rng.integers(0, max(1, n_times - n)))
        emg = np.diff(rng.standard_normal(n + 1)).astype(np.float32) * rng.uniform(15, 50)
        emg *= np.sin(np.linspace(0, np.pi, n)).astype(np.float32)
        for s in names:  # the 3 most lateral channels of every shaft
            for c in np.flatnonzero(shafts == s)[-3:]:
                data[c, start : start + n] += emg[: n_times - start] * rng.uniform(0.5, 1.0)
        truth.append((start / sfreq, "chewing", "lateral"))


__all__ = [
    "CENTRES",
    "SEED_TAG",
    "apply_montage",
    "describe_dataset",
    "knee_noise",
    "lead_field",
    "plan_subject",
    "subject_runs",
    "synthesize_run",
]
