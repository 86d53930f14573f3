"""The synthetic SEEG cohort: Epileptor seizures recorded by simulated SEEG, written as BIDS.

Each subject gets its own brain (regions + connectome, :mod:`ingest.implant`), an
epileptogenic zone (EZ: regions with excitability above the critical value), a propagation zone
(PZ: regions close to threshold that the EZ recruits through permittivity coupling) and healthy
regions. Ictal runs integrate the Epileptor network (:mod:`ingest.epileptor`); each seizing
region then emits low-voltage fast activity at its onset and rhythmic spiking that slows down
towards its offset (:mod:`ingest.waveforms`). All runs carry 1/f background, interictal spikes
(more often in the EZ) with ripples, line noise, artefacts and a few bad contacts. SEEG shafts
record the regions through an inverse-square lead field.

The truth: a contact is in the (true) SOZ when its lead field is dominated by EZ regions. The
clinical labels written to ``channels.tsv`` are that set corrupted to ``label_agreement``
(Dice), and the resection covers the clinical SOZ plus neighbours. The truth is written under
``derivatives/sozkit-truth`` (see :mod:`ingest.bids_writer` for the layout).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest import waveforms as wf
from ingest.bids_writer import RunData, SubjectData, write_dataset_files, write_run, write_subject
from ingest.epileptor import EpileptorParams, region_onsets, seizure_drive, simulate_network
from ingest.errors import ConfigError
from ingest.implant import Implantation, implant, lead_field, make_anatomy
from ingest.sim_config import CENTRES, GENERATORS, SimulationConfig
from ingest.sim_truth import clinical_labels, draw_targets, draw_zones

logger = logging.getLogger(__name__)


def simulate_cohort(
    out_dir: str | os.PathLike,
    cfg: SimulationConfig = SimulationConfig(),
    *,
    generator: str = "epileptor",
    subjects: Sequence[int] | None = None,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Simulate a cohort and write it as a BIDS iEEG dataset (EDF, ds004100 conventions).

    Parameters
    ----------
    out_dir : str or path-like
        Root of the BIDS dataset (created; existing subjects with the same ids are overwritten).
    cfg : SimulationConfig
        What to simulate.
    generator : str
        Generator family, one of :data:`GENERATORS`: ``"epileptor"`` (this module: Epileptor
        network, inverse-square lead field, referential montage, centres A-C) or
        ``"wendling"`` (:mod:`ingest.wendling_cohort`: Wendling neural masses, exponential
        lead field, bipolar / white-matter-referenced montages, its own noise, artefacts, naming,
        rates and centres D-F). Same seed, different family: independent cohorts.
    subjects : sequence of int or None
        Indices (0-based, ``< cfg.n_subjects``) of the cohort's subjects to write; default all.
        Subject ``i`` is the same whichever subset it is written with, so a cohort can be split
        into folders (training cohort / held-out patients) without changing anyone's data.
    n_jobs : int
        Subjects simulated at once in worker processes (they are independent); 1 runs in this
        process. The bytes written do not depend on it.
    progress : callable (done, total) or None
        Called after each written run (after each subject when ``n_jobs > 1``).

    Returns
    -------
    Path
        The BIDS root.
    """
    indices = range(cfg.n_subjects) if subjects is None else subjects
    (root,) = simulate_cohorts(
        {out_dir: indices}, cfg, generator=generator, n_jobs=n_jobs, progress=progress
    )
    return root


def simulate_cohorts(
    parts: Mapping[str | os.PathLike, Sequence[int]],
    cfg: SimulationConfig = SimulationConfig(),
    *,
    generator: str = "epileptor",
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write the subjects of one simulated cohort into several BIDS datasets, in one pool.

    ``simulate_cohorts({"train": range(10), "heldout": [10, 11]}, cfg)`` writes the same bytes
    as two :func:`simulate_cohort` calls, but keeps every worker busy until the last subject
    (the demo's training and held-out cohorts: one process pool, no idle core while the first
    part's last subjects finish).

    Parameters
    ----------
    parts : mapping of path-like to sequence of int
        Each BIDS root and the subject indices written there (disjoint, ``< cfg.n_subjects``).
    cfg, generator, n_jobs, progress
        As for :func:`simulate_cohort` (``progress`` counts the runs of every part).

    Returns
    -------
    list of Path
        The BIDS roots, in the order of ``parts``.
    """
    if n_jobs < 1:
        raise ConfigError(f"n_jobs={n_jobs} must be >= 1.")
    if generator not in GENERATORS:
        raise ConfigError(f"generator={generator!r} is unknown; choose one of {GENERATORS}.")
    roots = {Path(out): sorted(set(subjects)) for out, subjects in parts.items()}
    jobs = [(root, i) for root, indices in roots.items() for i in indices]
    given = [i for _, i in jobs]
    if not all(roots.values()) or not all(0 <= i < cfg.n_subjects for i in given):
        raise ConfigError(
            f"subjects={given} must be non-empty indices in 0..{cfg.n_subjects - 1} "
            f"(the cohort has n_subjects={cfg.n_subjects})."
        )
    if len(set(given)) < len(given):
        raise ConfigError(f"subjects={given}: a subject may be written to one dataset only.")
    entropy: int | list[int] = cfg.seed
    if generator == "wendling":
        from ingest import wendling_cohort

        entropy = [cfg.seed, wendling_cohort.SEED_TAG]
    for root in roots:
        root.mkdir(parents=True, exist_ok=True)
    seqs = np.random.SeedSequence(entropy).spawn(cfg.n_subjects)
    runs_per_subject = cfg.n_ictal_runs + cfg.n_interictal_runs
    total = len(jobs) * runs_per_subject
    if n_jobs == 1:
        written = [
            simulate_subject(
                root,
                i,
                cfg,
                seqs[i],
                generator=generator,
                on_run=_counter(progress, k * runs_per_subject, total),
            )
            for k, (root, i) in enumerate(jobs)
        ]
    else:
        # "spawn": the caller may hold threads (Ray, torch) that fork would copy half-alive.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(n_jobs, len(jobs)), mp_context=ctx) as pool:
            futures = [
                pool.submit(simulate_subject, root, i, cfg, seqs[i], generator=generator)
                for root, i in jobs
            ]
            done = 0
            for future in as_completed(futures):
                future.result()
                done += runs_per_subject
                if progress is not None:
                    progress(done, total)
            written = [f.result() for f in futures]
    for root in roots:
        subjects = [w for (r, _), w in zip(jobs, written, strict=True) if r == root]
        write_dataset_files(root, subjects, cfg)
        if generator == "wendling":
            wendling_cohort.describe_dataset(root, cfg)
        n_runs = len(subjects) * runs_per_subject
        logger.info("wrote %d subjects (%d runs) to %s", len(subjects), n_runs, root)
    return list(roots)


def simulate_subject(
    root: Path,
    index: int,
    cfg: SimulationConfig,
    seq: np.random.SeedSequence,
    *,
    generator: str = "epileptor",
    on_run: Callable[[], None] | None = None,
) -> SubjectData:
    """Simulate and write every run of one subject (independent of the other subjects).

    Parameters
    ----------
    root : Path
        BIDS root.
    index : int
        Subject index in the cohort (sets the id ``sim001``... and the centre).
    cfg : SimulationConfig
        Cohort configuration.
    seq : numpy.random.SeedSequence
        This subject's seed sequence: one stream for the plan, one for the family's model, one
        per run.
    generator : str
        The family (:func:`simulate_cohort`); it draws the subject and makes its runs
        (``subject_runs`` of this module or of :mod:`ingest.wendling_cohort`).
    on_run : callable or None
        Called after each written run.

    Returns
    -------
    SubjectData
        The subject's metadata and truth (as written).
    """
    family = subject_runs
    if generator == "wendling":
        from ingest.wendling_cohort import subject_runs as family
    plan_seq, model_seq, *run_seqs = seq.spawn(2 + cfg.n_ictal_runs + cfg.n_interictal_runs)
    rngs = [np.random.default_rng(s) for s in (plan_seq, model_seq, *run_seqs)]
    subject, runs = family(index, cfg, rngs[0], rngs[1], rngs[2:])
    write_subject(root, subject)
    for run in runs:
        write_run(root, subject, run)
        subject.runs.append(run.summary())
        if on_run is not None:
            on_run()
    return subject


def subject_runs(
    index: int,
    cfg: SimulationConfig,
    plan_rng: np.random.Generator,
    epi_rng: np.random.Generator,
    run_rngs: Sequence[np.random.Generator],
) -> tuple[SubjectData, Iterator[RunData]]:
    """This family's subject (:func:`plan_subject`) and its runs, made one by one as iterated:
    the ictal runs (seizures of :func:`_simulate_seizures`), then the interictal ones."""
    subject = plan_subject(index, cfg, plan_rng)
    ictal = _simulate_seizures(subject, cfg, epi_rng)
    tasks = [("ictal", k) for k in range(cfg.n_ictal_runs)]
    tasks += [("interictal", k) for k in range(cfg.n_interictal_runs)]

    def runs() -> Iterator[RunData]:
        for (task, k), rng in zip(tasks, run_rngs, strict=True):
            duration = cfg.ictal_duration_s if task == "ictal" else cfg.interictal_duration_s
            seizure = ictal[k] if task == "ictal" else None
            yield synthesize_run(subject, task, k + 1, duration, seizure, rng)

    return subject, runs()


def plan_subject(index: int, cfg: SimulationConfig, rng: np.random.Generator) -> SubjectData:
    """Draw one subject's centre, anatomy, EZ/PZ, implantation, truth and clinical labels."""
    d = cfg.difficulty
    site, line_freq, naming, preferred = CENTRES[index % cfg.n_centres]
    choices = [s for s in cfg.sfreqs if s in preferred] or list(cfg.sfreqs)
    sfreq = float(choices[rng.integers(len(choices))])
    anatomy = make_anatomy(int(rng.integers(cfg.n_regions[0], cfg.n_regions[1] + 1)), rng=rng)
    n = anatomy.n_regions
    ez, pz, role = draw_zones(anatomy.weights, d, rng, pair_p=0.5, n_pz=(2, 4))
    x0_rest = rng.uniform(-2.4, -2.2, n)
    x0_ictal = x0_rest.copy()
    x0_ictal[ez] = rng.uniform(-1.8, -1.6, len(ez))
    x0_ictal[pz] = rng.uniform(-2.10, -2.075, len(pz))

    targets, counts = draw_targets(anatomy.positions, ez, pz, cfg, rng, same_side=3.0)
    imp = implant(anatomy, np.asarray(targets), counts, naming=naming, rng=rng)
    gain = lead_field(imp.positions, anatomy.positions)  # (n_contacts, n_regions)

    soz_true, soz_label, resected = clinical_labels(gain, ez, imp, cfg.agreement, rng)
    return SubjectData(
        subject=f"sim{index + 1:03d}",
        site=site,
        line_freq=line_freq,
        naming=naming,
        sfreq=sfreq,
        anatomy=anatomy,
        implantation=imp,
        gain=gain,
        role=tuple(role),
        x0_rest=x0_rest,
        x0_ictal=x0_ictal,
        soz_true=soz_true,
        soz_label=soz_label,
        resected=resected,
        age=int(rng.integers(18, 60)),
        sex=str(rng.choice(["F", "M"])),
        hand=str(rng.choice(["R", "R", "R", "L"])),
        contact_gain=rng.lognormal(0.0, 0.3, imp.n_contacts),
        contact_exponent=rng.uniform(1.0, 1.6, imp.n_contacts),
        line_amp=rng.lognormal(np.log(8.0), 0.6, imp.n_contacts),
        difficulty=d,
    )


@dataclass(frozen=True)
class _SeizureRun:
    """Epileptor output of one ictal run, at the model rate."""

    lfp: np.ndarray  # (n_regions, n_steps)
    model_sfreq: float
    onset_s: np.ndarray  # (n_regions,), NaN = never seized
    offset_s: np.ndarray


def _simulate_seizures(
    subject: SubjectData, cfg: SimulationConfig, rng: np.random.Generator
) -> list[_SeizureRun]:
    """Integrate the network once for all ictal runs; shift runs whose seizure ends too late."""
    if cfg.n_ictal_runs == 0:
        return []
    params = EpileptorParams(**{**cfg.epileptor.__dict__, "coupling": 2.0 + 2.5 * cfg.difficulty})
    n_steps = int(round(cfg.ictal_duration_s * params.sfreq))
    lo, hi = cfg.onset_window_s
    # The ramp crosses the critical excitability a few seconds in; onset follows ~10-20 s later.
    release = np.clip(rng.uniform(lo, hi, cfg.n_ictal_runs) - 14.0, 1.0, None)
    for _attempt in range(4):
        drive = seizure_drive(n_steps, params.sfreq, release)
        trace = simulate_network(
            subject.x0_rest,
            subject.x0_ictal,
            subject.anatomy.weights,
            drive,
            params=params,
            rng=rng,
        )
        onset, offset = region_onsets(trace)
        first = np.nanmin(np.where(np.isnan(onset), np.inf, onset), axis=1)
        last = np.nanmax(np.where(np.isnan(offset), -np.inf, offset), axis=1)
        if not np.all(np.isfinite(first)):
            raise RuntimeError(
                f"sub-{subject.subject}: no seizure in an ictal run (EZ excitability "
                f"{subject.x0_ictal.max():.2f}); this is a simulator bug, please report it."
            )
        # Seconds to move each run's seizure earlier (> 0) or later (< 0) to fit the window.
        shift = np.maximum(last + cfg.min_postictal_s - cfg.ictal_duration_s, first - hi)
        shift = np.where(first < lo, first - lo, np.maximum(shift, 0.0))
        if np.all(shift == 0):
            break
        release = np.clip(release - shift, 0.5, None)
    else:
        logger.warning("sub-%s: seizure timing outside the requested window", subject.subject)
    lfp = trace.lfp
    return [
        _SeizureRun(lfp=lfp[i], model_sfreq=trace.sfreq, onset_s=onset[i], offset_s=offset[i])
        for i in range(cfg.n_ictal_runs)
    ]


def synthesize_run(
    subject: SubjectData,
    task: str,
    run: int,
    duration_s: float,
    seizure: _SeizureRun | None,
    rng: np.random.Generator,
) -> RunData:
    """Build the signals of one run, shape (n_channels, n_times) in µV, and its annotations."""
    sfreq = subject.sfreq
    n_times = int(round(duration_s * sfreq))
    t = np.arange(n_times) / sfreq
    d = subject.difficulty
    roles = np.asarray(subject.role)
    n_regions = roles.size

    # Region sources: connectome-correlated 1/f background.
    white = wf.pink_noise(
        n_regions, n_times, sfreq, exponent=rng.uniform(1.4, 2.0, n_regions), rng=rng
    )
    mix = np.eye(n_regions) + 0.3 * subject.anatomy.weights
    mix /= np.linalg.norm(mix, axis=1, keepdims=True)
    src = (mix.astype(np.float32) @ white) * np.float32(30.0)
    del white
    truth_events: list[tuple[float, str, str]] = []

    if seizure is not None:
        _add_seizures(src, t, seizure, roles, d, rng, truth_events)
    _add_interictal_spikes(src, subject, sfreq, rng, truth_events)

    # Contacts: lead field + local 1/f term + amplifier noise + line noise.
    imp = subject.implantation
    n_contacts = imp.n_contacts
    data = np.empty((n_contacts + 2, n_times), dtype=np.float32)
    gains = (subject.gain * subject.contact_gain[:, None]).astype(np.float32)
    local = wf.pink_noise(n_contacts, n_times, sfreq, exponent=subject.contact_exponent, rng=rng)
    data[:n_contacts] = gains @ src
    data[:n_contacts] += local * np.float32(10.0 * (1 + d))
    del local, src
    data[:n_contacts] += rng.standard_normal((n_contacts, n_times), dtype=np.float32) * np.float32(
        2.0
    )
    data[n_contacts] = wf.scalp_eeg(n_times, sfreq, rng=rng)
    data[n_contacts + 1] = wf.ecg(n_times, sfreq, rng=rng)
    line_amp = np.concatenate([subject.line_amp, rng.uniform(5, 30, 2)])

    # Bad contacts (1-3 per run), each with a reason to be bad.
    n_bad = int(rng.integers(1, 4))
    bad_idx = rng.choice(n_contacts, n_bad, replace=False)
    for c in bad_idx:
        kind = rng.choice(["popping", "line", "flat"])
        if kind == "popping":
            data[c] += wf.pops(n_times, sfreq, rate_per_min=rng.uniform(10, 30), rng=rng)
        elif kind == "line":
            line_amp[c] = rng.uniform(300, 800)
        else:
            data[c] = rng.standard_normal(n_times).astype(np.float32) * 0.5 + rng.uniform(-50, 50)
            line_amp[c] = 1.0
        truth_events.append((0.0, f"bad {kind}", imp.names[c]))
    data += wf.line_noise(n_times, sfreq, subject.line_freq, line_amp, rng=rng)

    _add_artefacts(data[:n_contacts], imp, sfreq, rng, truth_events)
    names = list(imp.names) + ["C3", "EKG1"]
    bad = {imp.names[c] for c in bad_idx} | {"C3", "EKG1"}
    events = []
    if seizure is not None:
        onset = float(np.nanmin(seizure.onset_s))
        offset = float(np.nanmax(seizure.offset_s))
        events = [(onset, "sz onset", 2), (offset, "sz offset", 1)]
    return RunData(
        task=task,
        run=run,
        sfreq=sfreq,
        names=tuple(names),
        data=data,
        bad=frozenset(bad),
        events=tuple(events),
        truth_events=tuple(sorted(truth_events)),
        region_onsets=None if seizure is None else seizure.onset_s,
        region_offsets=None if seizure is None else seizure.offset_s,
    )


def _add_seizures(src, t, seizure, roles, d, rng, truth_events) -> None:
    """Add the ictal activity of every seizing region to its source (in place)."""
    model_t = np.arange(seizure.lfp.shape[1]) / seizure.model_sfreq
    sfreq = 1.0 / (t[1] - t[0])
    for r in np.flatnonzero(np.isfinite(seizure.onset_s)):
        on, off = float(seizure.onset_s[r]), float(seizure.offset_s[r])
        ez = roles[r] == "ez"
        truth_events.append((on, "region onset", f"region-{r:02d} ({roles[r]})"))
        # Epileptor field potential (slow spike-and-wave), relative to its pre-ictal level.
        lfp = seizure.lfp[r]
        base = float(np.median(lfp[: max(1, int(on * seizure.model_sfreq) - 1)]))
        slow = np.interp(t, model_t, lfp - base).astype(np.float32)
        src[r] += slow * np.float32(rng.uniform(60, 120))
        tau = t - on
        active = (tau >= 0) & (t <= off)
        if not active.any():
            continue
        dur = max(off - on, 1.0)
        # Low-voltage fast activity at onset: strong in the EZ; in the PZ it grows with difficulty.
        lvfa_s = rng.uniform(3.0, 8.0)
        lvfa_amp = rng.uniform(40, 70) * (1.6 - d) if ez else rng.uniform(10, 50) * d
        f_hi = min(rng.uniform(70, 110) if ez else rng.uniform(25, 45), 0.4 * sfreq)
        env = np.where(
            (tau >= 0) & (tau < lvfa_s), np.sin(np.pi * np.clip(tau / lvfa_s, 0, 1)) ** 2, 0
        )
        idx = np.flatnonzero(env > 0)
        if idx.size > 1:
            osc = wf.chirp_oscillation(tau[idx], f_hi, 0.3 * f_hi, lvfa_s, rng=rng, phase_noise=3.0)
            src[r, idx] += (lvfa_amp * env[idx] * osc).astype(np.float32)
        # Rhythmic spiking, slowing from ~8 Hz to ~2-3 Hz towards the offset, growing in amplitude.
        spike_amp = rng.uniform(150, 300) * (1.0 if ez else 0.7 + 0.9 * d)
        start = on + 0.6 * lvfa_s
        idx = np.flatnonzero((t >= start) & (t <= off))
        if idx.size > 1:
            ts = t[idx] - start
            osc = wf.chirp_oscillation(
                ts,
                rng.uniform(6, 9),
                rng.uniform(2, 3.5),
                max(dur - 0.6 * lvfa_s, 1.0),
                rng=rng,
                phase_noise=0.3,
                sharpness=6.0,
            )
            ramp = np.clip(ts / 4.0, 0, 1) * np.clip((off - t[idx]) / 1.0, 0, 1)
            src[r, idx] += (spike_amp * ramp * osc).astype(np.float32)


def _add_interictal_spikes(src, subject, sfreq, rng, truth_events) -> None:
    """Interictal spikes (and ripples) per region, spreading to strongly connected regions."""
    d = subject.difficulty
    roles = np.asarray(subject.role)
    w = subject.anatomy.weights
    n_regions, n_times = src.shape
    minutes = n_times / sfreq / 60.0
    rate = np.where(
        roles == "ez", 6.0 * (1.3 - 0.8 * d), np.where(roles == "pz", 1.0 + 1.5 * d, 0.2 + 0.6 * d)
    )
    ripple_hi = min(250.0, 0.4 * sfreq)
    for r in range(n_regions):
        for _ in range(rng.poisson(rate[r] * minutes)):
            sample = int(rng.integers(0, n_times))
            tmpl = wf.spike_template(sfreq, width_s=rng.uniform(0.02, 0.07), rng=rng)
            amp = rng.uniform(150, 400)
            wf.add_events(src[r], tmpl, sample, amp)
            truth_events.append(
                (sample / sfreq, "interictal spike", f"region-{r:02d} ({roles[r]})")
            )
            if roles[r] == "ez" and rng.random() < 0.4:
                freq = rng.uniform(80, ripple_hi)
                ripple = wf.ripple_template(sfreq, freq=freq, rng=rng)
                wf.add_events(src[r], ripple, sample, rng.uniform(15, 35))
                truth_events.append((sample / sfreq, "ripple", f"region-{r:02d} ({roles[r]})"))
            for j in np.flatnonzero(rng.random(n_regions) < 0.6 * w[r]):
                delay = int(rng.uniform(0.005, 0.03) * sfreq)
                wf.add_events(src[j], tmpl, sample + delay, amp * rng.uniform(0.3, 0.6))


def _add_artefacts(data, imp: Implantation, sfreq, rng, truth_events) -> None:
    """Movement bursts over whole shafts and flat segments on single contacts (in place)."""
    n_contacts, n_times = data.shape
    shafts = np.asarray(imp.shafts)
    names = sorted(set(imp.shafts))
    for _ in range(rng.poisson(0.5 * n_times / sfreq / 60.0)):
        n = int(rng.uniform(0.5, 3.0) * sfreq)
        start = int(rng.integers(0, max(1, n_times - n)))
        burst = wf.movement_burst(n, sfreq, rng=rng)
        n_hit = min(len(names), int(rng.integers(1, 4)))  # small implants have < 3 shafts
        hit = rng.choice(names, n_hit, replace=False)
        for c in np.flatnonzero(np.isin(shafts, hit)):
            data[c, start : start + n] += burst[: n_times - start] * rng.uniform(0.6, 1.0)
        truth_events.append((start / sfreq, "movement", ",".join(sorted(hit))))
    if rng.random() < 0.4:
        c = int(rng.integers(n_contacts))
        n = int(rng.uniform(1.0, 4.0) * sfreq)
        start = int(rng.integers(0, max(1, n_times - n)))
        data[c, start : start + n] = data[c, start]
        truth_events.append((start / sfreq, "flat", imp.names[c]))


def _counter(progress, offset: int, total: int) -> Callable[[], None] | None:
    if progress is None:
        return None
    done = [offset]

    def tick() -> None:
        done[0] += 1
        progress(done[0], total)

    return tick


__all__ = [
    "CENTRES",
    "GENERATORS",
    "SimulationConfig",
    "plan_subject",
    "simulate_cohort",
    "simulate_cohorts",
    "simulate_subject",
    "subject_runs",
]
