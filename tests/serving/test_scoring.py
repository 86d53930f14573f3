"""Scorer: checkpoints in, per-contact probabilities out, equal to training's evaluation path."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.errors import RecordingError, SozkitError
from serving.preprocess import RecordingStream, RecordingTooShort
from serving.scoring import Scorer, SequenceAssembler, pad_sequences, run_models
from trainer.datasets import RecordingInfo, evaluation_sequences

from .conftest import CONTACTS, SEQ_LEN, make_recording


@pytest.fixture(scope="module")
def scorer(serving_data):
    return Scorer.from_run(serving_data["run_dir"])


def test_run_models_lists_folds(serving_data):
    assert run_models(serving_data["run_dir"]) == {"sozformer": [0, 1], "svm": [0, 1]}
    with pytest.raises(SozkitError, match="does not exist"):
        run_models(serving_data["root"] / "nope")


def test_score_one_probability_per_kept_contact(scorer, serving_data):
    res = scorer.score(serving_data["long_rec"])
    assert res.channels == CONTACTS  # BAD1 (bad) and EKG (not intracranial) dropped
    assert res.probabilities.shape == (len(CONTACTS),)
    assert np.all((res.probabilities > 0) & (res.probabilities < 1))
    assert res.threshold == pytest.approx(0.5)  # mean of the folds' 0.45 and 0.55
    assert res.folds == (0, 1) and res.fold is None
    assert res.n_sequences == 3  # 60 s = 12 clips = 3 sequences of 4
    assert np.array_equal(res.soz_calls, res.probabilities >= 0.5)
    ranked = res.ranked()
    assert [c.rank for c in ranked] == list(range(1, 8))
    assert all(a.probability >= b.probability for a, b in zip(ranked, ranked[1:], strict=False))
    assert {c.channel for c in ranked if c.soz_label} == {"LA1", "LA2"}
    assert any("BAD1" in w for w in res.warnings) and any("EKG" in w for w in res.warnings)
    assert res.timings["total"] > 0 and "model" in res.timings


def test_ensemble_is_mean_of_folds(scorer, serving_data):
    rec = serving_data["long_rec"]
    each = [Scorer.from_run(serving_data["run_dir"], fold=k).score(rec) for k in (0, 1)]
    assert each[0].threshold == pytest.approx(0.45) and each[1].folds == (1,)
    assert not np.allclose(each[0].probabilities, each[1].probabilities)
    mean = (each[0].probabilities + each[1].probabilities) / 2
    np.testing.assert_allclose(scorer.score(rec).probabilities, mean, rtol=1e-5)
    with pytest.raises(SozkitError, match="has no fold 7"):
        Scorer.from_run(serving_data["run_dir"], fold=7)
    with pytest.raises(SozkitError, match="no 'dcgru' model"):
        Scorer.from_run(serving_data["run_dir"], model="dcgru")


def test_cached_and_two_pass_streams_agree(serving_data):
    rec = serving_data["long_rec"]
    cached = Scorer.from_run(serving_data["run_dir"], cache_bytes=1 << 30)
    twopass = Scorer.from_run(serving_data["run_dir"], cache_bytes=0)
    a, b = cached.score(rec), twopass.score(rec)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    s = RecordingStream(rec, cached.ingest_config, cache_bytes=0)
    blocks = list(s)
    assert not s.timings.cached and s.timings.pass2 > 0
    assert [b[0] for b in blocks] == [0, 4, 8]
    assert blocks[0][1].shape == (4, len(CONTACTS), cached.ingest_config.clip_samples)


def test_sequences_match_training_evaluation(scorer, serving_data):
    """Same starts as trainer.datasets.evaluation_sequences, the features of those clips."""
    rec = serving_data["long_rec"]
    stream = scorer.stream(rec)
    clips = np.concatenate([c for _, c in stream])  # (12, C, T) scaled
    feats = scorer.features(clips)  # (12, C, F)
    seqs = list(scorer.prepare(rec))
    info = RecordingInfo("r", "p", "c", 12, CONTACTS, np.zeros(7, np.float32))
    starts = evaluation_sequences([info], seq_len=SEQ_LEN)[:, 1]
    assert len(seqs) == len(starts)
    for seq, s in zip(seqs, starts, strict=True):
        # (BLAS may sum the band averages in another order for another batch shape)
        np.testing.assert_allclose(seq, feats[s : s + SEQ_LEN].transpose(1, 0, 2), rtol=1e-5)


@pytest.mark.parametrize("block", [1, 3, 5, 12])
@pytest.mark.parametrize("n_clips", [4, 11, 12, 13])
def test_assembler_emits_every_sequence_with_bounded_buffer(block, n_clips):
    feats = np.arange(n_clips, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    info = RecordingInfo("r", "p", "c", n_clips, ("a", "b"), np.zeros(2, np.float32))
    starts = evaluation_sequences([info], seq_len=4, stride=3)[:, 1]
    asm = SequenceAssembler(starts, 4)
    out = []
    for lo in range(0, n_clips, block):
        out += asm.add(lo, feats[lo : lo + block])
        assert len(asm._buf) <= 4 + block  # never the whole recording
    asm.check_done("r")
    assert [int(seq[0, 0, 0]) for seq in out] == list(starts)
    assert all(seq.shape == (2, 4, 3) for seq in out)
    np.testing.assert_array_equal(out[-1][0, :, 0], np.arange(n_clips - 4, n_clips))


def test_too_short_recording_is_a_clear_error(scorer, serving_data):
    rec = make_recording(serving_data["short_edf"], rid="test__short")
    with pytest.raises(RecordingTooShort, match="fewer than the 4 clips of one model sequence"):
        scorer.score(rec)
    assert issubclass(RecordingTooShort, RecordingError)


def test_predict_pads_mixed_channel_counts(scorer):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, SEQ_LEN, scorer.n_feats)).astype(np.float32)
    b = rng.normal(size=(5, SEQ_LEN, scorer.n_feats)).astype(np.float32)
    both = scorer.predict([a, b])
    assert both.shape == (2, 5)
    assert np.all(both[0, 3:] == 0)
    # padding does not change a sequence's probabilities
    np.testing.assert_allclose(both[0, :3], scorer.predict([a])[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expected \\(n_chans, seq_len=4"):
        pad_sequences([a[:, :2]], seq_len=SEQ_LEN, n_feats=scorer.n_feats)


@pytest.mark.parametrize("extras", [(), ("spikes", "linelength")])
def test_ingest_and_serving_agree(serving_data, ingested, tmp_path, extras):
    """Scoring the file == scoring the store's clips == training's evaluation loop (from the
    feature cache, as training reads it), with and without per-clip extra measures."""
    from ingest.store import ClipStore
    from serving.engine import score_recording
    from serving.inputs import recording_for_path
    from serving.preprocess import StoredRecordingStream, stored_recording
    from trainer.datasets import SequenceDataset, make_loader, recording_table
    from trainer.feature_cache import write_recording_features
    from trainer.loop import predict

    from .conftest import FEATURES, make_run_dir

    run_dir = serving_data["run_dir"]
    if extras:
        features = {**FEATURES, "extras": list(extras)}
        run_dir = make_run_dir(tmp_path, svm=False, features=features)
    scorer = Scorer.from_run(run_dir, fold=0)
    assert scorer.feature_config == ({**FEATURES, "extras": list(extras)} if extras else FEATURES)
    rec = recording_for_path(ingested["folder"] / "p1_ictal.edf", line_freq=50.0)
    from_file = scorer.score(rec)

    store = ClipStore.open(ingested["store"])
    assert store.ingest_config == scorer.ingest_config
    (rid,) = store.recordings()["recording_id"]
    assert rid == rec.recording_id
    stream = StoredRecordingStream(store, rid, block_clips=5)
    (from_store,) = score_recording(
        stored_recording(store, rid), [scorer.consumer()], stream=stream
    )
    assert from_store.channels == from_file.channels
    np.testing.assert_allclose(from_store.probabilities, from_file.probabilities, rtol=1e-4)

    cache = str(tmp_path / "cache")
    assert write_recording_features(store, rid, scorer.feature_config, url=cache)
    infos = recording_table(store, labelled_only=False)
    items = evaluation_sequences(infos, seq_len=SEQ_LEN)
    ds = SequenceDataset(
        ingested["store"], infos, items, seq_len=SEQ_LEN, feature_config=scorer.feature_config,
        store=store, feature_cache=cache,
    )  # fmt: skip
    assert ds.n_feats == scorer.n_feats == FEATURES["n_bands"] + len(extras)
    sums = predict(scorer.models[0], make_loader(ds, batch_size=2, prefetch=0))
    train_eval = sums.sums[0][: len(rec.contacts)] / sums.counts[0]
    np.testing.assert_allclose(train_eval, from_store.probabilities, rtol=1e-5)
    np.testing.assert_allclose(train_eval, from_file.probabilities, rtol=1e-4)


def test_a_run_with_a_fold_missing_its_checkpoint_is_refused(serving_data, tmp_path, caplog):
    """A fold killed between its marker and its checkpoint (older sozkit) is never served silently."""
    import shutil

    from serving.scoring import load_scorers
    from trainer.rundir import IncompleteRun

    run_dir = tmp_path / "run"
    shutil.copytree(serving_data["run_dir"], run_dir)
    (run_dir / "sozformer" / "fold_1" / "checkpoint.pt").unlink()
    assert run_models(run_dir) == {"sozformer": [0], "svm": [0, 1]}
    with pytest.raises(IncompleteRun, match=r"'sozformer' folds \[1\] did not finish"):
        Scorer.from_run(run_dir)
    with pytest.raises(IncompleteRun, match="--allow-incomplete"):
        load_scorers(run_dir, "all")
    with caplog.at_level("WARNING"):
        scorer = Scorer.from_run(run_dir, allow_incomplete=True)
    assert scorer.folds == (0,) and scorer.threshold == pytest.approx(0.45)
    assert "served from folds [0] ONLY; folds [1] did not finish" in caplog.text
    assert Scorer.from_run(run_dir, fold=0).folds == (0,)  # a complete fold alone is fine
