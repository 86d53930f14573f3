"""Ingest benchmark: throughput and peak memory of `soz ingest` on long 128-contact EDF recordings.

Writes a 1-hour and a 4-hour 128-contact 1024-Hz EDF **streamed** to disk (pyedflib, one
1-second data record at a time: pink noise plus 60-Hz line noise, never the whole array in
memory), then for each:

- plain lazy MNE decoding of the same file in 60-s blocks (``read_raw_edf(preload=False)``,
  ``get_data``), the reference;
- the whole ingest (Beam FnApiRunner, one worker per core, default IngestConfig: 1000 Hz,
  float16, 5-min blocks) in a child process, its wall time and the peak RSS of the whole process
  tree (driver + Beam workers, sampled every 0.2 s from /proc);
- a single-process profile of one block (read / resample / filter / stats / store) to show
  what limits it.

Prints and saves JSON to ``benchmarks/results/ingest.json``. ``--quick`` uses 5- and 20-minute
files (a smoke run). Usage::

    python -m benchmarks.ingest [--quick] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import save_figures
from ingest.ownership import descendants

REPO = Path(__file__).resolve().parents[1]

N_CHANS = 128
SFREQ = 1024


def write_edf_streamed(path: Path, seconds: int, *, seed: int = 0) -> None:
    """Write a (N_CHANS, seconds * SFREQ) EDF one 1-s record at a time (pink + line noise)."""
    import pyedflib
    import scipy.signal

    rng = np.random.default_rng(seed)
    # Pink-noise IIR (Kellet's 3-pole approximation), state carried across records.
    b = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    a = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
    zi = np.zeros((N_CHANS, 3))
    writer = pyedflib.EdfWriter(str(path), N_CHANS, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        headers = []
        for i in range(N_CHANS):
            headers.append(
                {
                    "label": f"{'ABCDEFGH'[i // 16]}{i % 16 + 1}",
                    "dimension": "uV",
                    "sample_frequency": SFREQ,
                    "physical_max": 3276.7,
                    "physical_min": -3276.8,
                    "digital_max": 32767,
                    "digital_min": -32768,
                }
            )
        writer.setSignalHeaders(headers)
        gains = rng.uniform(20, 80, (N_CHANS, 1))
        t = np.arange(SFREQ) / SFREQ
        for s in range(seconds):
            white = rng.standard_normal((N_CHANS, SFREQ))
            pink, zi = scipy.signal.lfilter(b, a, white, axis=1, zi=zi)
            line = 40.0 * np.sin(2 * np.pi * 60.0 * (t + s))
            writer.writeSamples(list(gains * pink * 10 + line), digital=False)
    finally:
        writer.close()


def mne_decode_s(path: Path, block_s: float = 60.0) -> tuple[float, float]:
    """(wall, CPU) seconds to decode the whole file with lazy MNE in blocks (the reference)."""
    import mne

    t0, c0 = time.perf_counter(), time.process_time()
    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    step = int(block_s * raw.info["sfreq"])
    for start in range(0, raw.n_times, step):
        raw.get_data(start=start, stop=min(start + step, raw.n_times))
    return time.perf_counter() - t0, time.process_time() - c0


def _recording(path: Path):
    from ingest.recording import Recording
    from ingest.signals import read_header

    h = read_header(path)
    return Recording(
        recording_id=f"bench__{path.stem}",
        cohort="bench",
        subject=path.stem,
        path=str(path),
        sfreq=h.sfreq,
        n_times=h.n_times,
        channels=h.ch_names,
        ch_types=("seeg",) * len(h.ch_names),
        line_freq=60.0,
    )


def _child(edf: str, store: str) -> None:
    """Run one ingest (in its own process tree, measured by the parent)."""
    from ingest.config import IngestConfig
    from ingest.driver import ingest_recordings

    t0 = time.perf_counter()
    report = ingest_recordings([_recording(Path(edf))], store, IngestConfig())
    out = {
        "ingest_s": time.perf_counter() - t0,
        "n_ingested": report.n_ingested,
        "n_failed": report.n_failed,
        "n_clips": report.n_clips,
        "failures": report.failures["reason"].tolist(),
        "counters": report.counters,
    }
    print("RESULT " + json.dumps(out), flush=True)


def _tree_rss_bytes(root: int) -> int:
    """Sum of VmRSS over ``root`` and all its descendants (Linux /proc)."""
    total = 0
    for pid in [root, *descendants(root)]:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def measure_ingest(edf: Path, store: Path) -> dict:
    """Ingest ``edf`` in a child process; wall time and peak RSS of its whole process tree."""
    shutil.rmtree(store, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ingest", "--child", str(edf), str(store)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_bytes(proc.pid))
        time.sleep(0.2)
    out = proc.stdout.read()
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"ingest child failed (rc={proc.returncode}): {out[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(line[len("RESULT ") :])
    # CPU seconds of the whole tree (driver + Beam workers, reaped by the driver): unlike the
    # wall time, it does not depend on what else the machine runs.
    result["ingest_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["peak_rss_mb"] = peak / 2**20
    result["store_mb"] = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**20
    return result


def _previous_read(raw, start: int, stop: int, picks: list[int]) -> np.ndarray:
    """The read path before this commit: MNE's float64 blocks, x 1e6, then float32."""
    x = np.empty((len(picks), stop - start), dtype=np.float32)
    for a in range(start, stop, 65536):
        b = min(a + 65536, stop)
        x[:, a - start : b - start] = (raw.get_data(picks=picks, start=a, stop=b) * 1e6).astype(
            np.float32
        )
    return x


def _previous_fir_filter(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The FIR before overlap-save: one FFT over the whole block."""
    import scipy.fft

    n_taps, n_times = h.shape[-1], x.shape[-1]
    n_fft = scipy.fft.next_fast_len(n_times, real=True)
    X = scipy.fft.rfft(x, n_fft, axis=-1)
    X *= scipy.fft.rfft(h, n_fft).astype(np.complex64)
    return np.ascontiguousarray(scipy.fft.irfft(X, n_fft, axis=-1)[..., n_taps - 1 : n_times])


def _previous_to_storage(x: np.ndarray, dtype: str) -> tuple[np.ndarray, int]:
    """The float16 cast before: |x| and a mask as float32-sized temporaries."""
    info = np.finfo(dtype)
    n_sat = int(np.count_nonzero(np.abs(x) > info.max))
    if n_sat:
        x = np.clip(x, float(info.min), float(info.max))
    return x.astype(dtype), n_sat


def _previous_process_block(raw, picks, src, block, plan, cfg, taps) -> tuple[np.ndarray, ...]:
    """The block loop before this commit (groups of 32 channels over a whole-block read), then
    its float16 cast: the same arithmetic as ``process_block`` + ``to_storage`` were."""
    from ingest import preprocessing as pp

    cs, hf = cfg.clip_samples, (taps.shape[0] - 1) // 2
    n = block.n_clips * cs
    x = _previous_read(raw, src[0], src[1], picks)
    if not np.isfinite(x).all():
        raise ValueError("NaN in the benchmark file")
    clips = np.empty((block.n_clips, len(picks), cs), dtype=np.float32)
    first = block.clip_start * cs - hf - src[2]
    for g in range(0, len(picks), 32):
        y = pp.resample(x[g : g + 32], plan.up, plan.down)
        z = _previous_fir_filter(np.asarray(y[:, first : first + n + 2 * hf]), taps)
        clips[:, g : g + 32, :] = z.reshape(z.shape[0], block.n_clips, cs).transpose(1, 0, 2)
    std = pp.robust_std(clips)
    return _previous_to_storage(clips, cfg.dtype)[0], std


def _cpu(fn, *args, repeat: int = 3, **kwargs):
    """(result, least CPU seconds of ``repeat`` calls): CPU time ignores the shared box's load."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        out = fn(*args, **kwargs)
        best = min(best, time.process_time() - t)
    return out, best


def profile_block(edf: Path) -> dict:
    """CPU seconds per stage of one 5-min block x 128 channels, before and after (same run).

    ``before``: the chain of commit 37b8886 (MNE float64 reads, polyphase resampling, one FFT
    over the block for the FIR, float16 cast through float32 temporaries), rebuilt here from
    the functions that remain plus the replaced ones above: each stage alone on the whole
    block, and the previous block loop as it ran (``process_block_then_to_float16``: groups of
    32 channels, strided copies). ``after``: the current stages alone, and ``process_block``
    (``dtype="float16"``, and float32 as ``ingest.pipeline`` calls it today). Each figure is
    the least of 3 runs of ``time.process_time`` in this single process (one core).
    """
    import mne

    from ingest import preprocessing as pp
    from ingest.config import IngestConfig
    from ingest.signals import open_signal
    from ingest.store import ClipStore
    from ingest.stream import plan_blocks, process_block, read_extended, recording_plan

    cfg = IngestConfig()
    rec = _recording(edf)
    plan = recording_plan(rec, cfg)
    blocks = plan_blocks(rec, cfg)
    if len(blocks) < 3:
        raise ValueError(f"{edf} has {len(blocks)} blocks; profile a file of 3 or more.")
    block = blocks[len(blocks) // 2]  # away from the ends: no reflected margins
    taps = plan.filter_taps(cfg)
    hf = (taps.shape[0] - 1) // 2
    cs, n = cfg.clip_samples, block.n_clips * cfg.clip_samples

    def as_clips(z: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(z.reshape(z.shape[0], block.n_clips, cs).transpose(1, 0, 2))

    before: dict[str, float] = {}
    after: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = ClipStore.open(Path(tmp) / "s", "a", config=cfg)
        store.create_array("r", n_clips=plan.n_clips, n_channels=len(plan.contacts))
        # before: the previous chain, the block's source range (margins included, as planned then)
        raw = mne.io.read_raw_edf(edf, preload=False, verbose="error")
        picks = [raw.ch_names.index(c) for c in plan.contacts]
        hr = pp.resampler_half_length(plan.up, plan.down)
        anchor = ((block.clip_start * cs - hf - -(-hr // plan.down)) // plan.up) * plan.up
        src0 = anchor // plan.up * plan.down
        src1 = -(-((block.clip_stop * cs + hf) * plan.down + hr) // plan.up) + 1
        x, before["read"] = _cpu(_previous_read, raw, src0, src1, picks)
        y, before["resample"] = _cpu(pp.resample, x, plan.up, plan.down)
        first = block.clip_start * cs - hf - anchor
        z, before["fir_filter"] = _cpu(_previous_fir_filter, y[:, first : first + n + 2 * hf], taps)
        clips = as_clips(z)
        del x, y, z
        _, before["robust_std"] = _cpu(pp.robust_std, clips)
        stored, before["to_float16"] = _cpu(_previous_to_storage, clips, cfg.dtype)
        _, before["write"] = _cpu(store.write_block, "r", block.clip_start, stored[0])
        del clips, stored
        _, before["process_block_then_to_float16"] = _cpu(
            _previous_process_block, raw, picks, (src0, src1, anchor), block, plan, cfg, taps
        )
        # after: the current stages one by one, then process_block as the pipeline calls it
        with open_signal(rec) as reader:
            x, after["read"] = _cpu(
                read_extended,
                reader,
                block.src_start,
                block.src_stop,
                n_times=plan.n_times,
                picks=plan.contacts,
            )
            start = block.clip_start * cs - block.anchor
            z, after["resample_filter"] = _cpu(
                pp.resample_filter, x, plan.up, plan.down, taps, start=start, n_out=n
            )
            clips = as_clips(z)
            del x, z
            _, after["robust_std"] = _cpu(pp.robust_std, clips)
            stored, after["to_float16"] = _cpu(pp.to_storage, clips, cfg.dtype)
            _, after["write"] = _cpu(store.write_block, "r", block.clip_start, stored[0])
            del clips, stored
            result, after["process_block_float16"] = _cpu(
                process_block, reader, rec, block, cfg, dtype=cfg.dtype
            )
            _, pipeline_f32 = _cpu(process_block, reader, rec, block, cfg)
    before["total_of_stages"] = sum(v for k, v in before.items() if not k.startswith("process"))
    before["block_plus_write"] = before["process_block_then_to_float16"] + before["write"]
    after["total_of_stages"] = sum(v for k, v in after.items() if not k.startswith("process"))
    after["block_plus_write"] = after["process_block_float16"] + after["write"]
    after["process_block_float32"] = pipeline_f32
    return {
        "cpu_s_before": before,
        "cpu_s_after": after,
        "speedup_block_plus_write": before["block_plus_write"] / after["block_plus_write"],
        "speedup_stages": before["total_of_stages"] / after["total_of_stages"],
        "filter_taps": int(taps.shape[0]),
        "block_channel_samples": int(result.clips.size),
        "measured_with": "time.process_time, least of 3, one process",
    }


def _block_memory_child(edf: str, block_clips: str, mode: str) -> None:
    """Peak RSS above the import baseline while processing + writing every block (one process)."""
    import apache_beam  # noqa: F401  (a Beam worker has it imported)

    from ingest import preprocessing as pp
    from ingest.config import IngestConfig
    from ingest.signals import open_signal
    from ingest.store import ClipStore
    from ingest.stream import plan_blocks, process_block, recording_plan

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith(key))

    cfg = IngestConfig(block_clips=int(block_clips))
    rec = _recording(Path(edf))
    plan = recording_plan(rec, cfg)
    with tempfile.TemporaryDirectory() as tmp, open_signal(rec) as reader:
        store = ClipStore.open(Path(tmp) / "s", "a", config=cfg)
        store.create_array(rec.recording_id, n_clips=plan.n_clips, n_channels=len(plan.contacts))
        base = status("VmRSS:")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # restart the high-water mark from here
        for block in plan_blocks(rec, cfg)[:3]:
            if mode == "float32":  # what ingest.pipeline does today
                result = process_block(reader, rec, block, cfg)
                stored, _ = pp.to_storage(result.clips, cfg.dtype)
            else:
                result = process_block(reader, rec, block, cfg, dtype=cfg.dtype)
                stored = result.clips
            store.write_block(rec.recording_id, block.clip_start, stored)
            del result, stored
        peak = status("VmHWM:")
    print("RESULT " + json.dumps({"base_mb": base / 2**20, "above_base_mb": (peak - base) / 2**20}))


def block_memory(edf: Path) -> dict:
    """Peak memory of one worker's block work, above its imports, per variant (child processes)."""
    out = {}
    for block_clips, mode in [(60, "float32"), (60, "float16"), (30, "float16")]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.ingest",
                "--memory-child",
                str(edf),
                str(block_clips),
                mode,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        out[f"block_clips={block_clips},process_block_dtype={mode}"] = json.loads(line[7:])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5- and 20-minute files")
    parser.add_argument("--workdir", type=Path, default=None, help="where the EDFs go")
    parser.add_argument("--keep", action="store_true", help="keep the EDF files")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ingest.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    if args.memory_child:
        _block_memory_child(*args.memory_child)
        return 0
    durations = [300, 1200] if args.quick else [3600, 4 * 3600]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sozkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "quick": args.quick,
        "n_chans": N_CHANS,
        "sfreq": SFREQ,
        "runs": [],
    }
    try:
        for seconds in durations:
            edf = work / f"bench_{seconds}s.edf"
            t = time.perf_counter()
            write_edf_streamed(edf, seconds)
            write_s = time.perf_counter() - t
            mne_decode_s(edf, 60.0)  # warm the page cache for both measurements
            decode, decode_cpu = mne_decode_s(edf, 60.0)
            load = os.getloadavg()
            ingest = measure_ingest(edf, work / "store")
            samples = N_CHANS * seconds * SFREQ
            run = {
                "duration_s": seconds,
                "edf_mb": edf.stat().st_size / 2**20,
                "edf_write_s": write_s,
                "mne_decode_s": decode,
                "mne_decode_channel_samples_per_s": samples / decode,
                **ingest,
                "ingest_channel_samples_per_s": samples / ingest["ingest_s"],
                "ratio_to_mne_decode": decode / ingest["ingest_s"],
                "mne_decode_cpu_s": decode_cpu,
                "cpu_ratio_to_mne_decode": decode_cpu / ingest["ingest_cpu_s"],
                "load_average_before_ingest": load,
                "load_average_after_ingest": os.getloadavg(),
            }
            if seconds >= 900 and not any("profile_one_block" in r for r in results["runs"]):
                run["profile_one_block"] = profile_block(edf)
                run["block_memory"] = block_memory(edf)
            results["runs"].append(run)
            print(json.dumps(run, indent=1), flush=True)
            if not args.keep:
                edf.unlink()
    finally:
        shutil.rmtree(work / "store", ignore_errors=True)
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    save_figures(args.out, results, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
