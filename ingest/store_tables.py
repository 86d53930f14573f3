"""The clip store's manifest tables: their Arrow schemas, sort keys and the frame <-> table
conversions (:mod:`ingest.store` reads and writes them; the layout is documented there)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

#: Version of this layout, stored in the root attributes.
FORMAT_VERSION = 1
#: Group holding one array per recording.
CLIPS_GROUP = "clips"

RECORDINGS_SCHEMA = pa.schema(
    [
        ("recording_id", pa.string()),
        ("subject", pa.string()),
        ("session", pa.string()),
        ("task", pa.string()),
        ("run", pa.string()),
        ("acquisition", pa.string()),
        ("cohort", pa.string()),
        ("centre", pa.string()),
        ("source_path", pa.string()),
        ("sfreq", pa.float64()),
        ("orig_sfreq", pa.float64()),
        ("resample_up", pa.int64()),
        ("resample_down", pa.int64()),
        ("line_freq", pa.float64()),
        ("n_channels", pa.int64()),
        ("n_clips", pa.int64()),
        ("duration_s", pa.float64()),
        ("n_seizures", pa.int64()),
        ("complete", pa.bool_()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
CHANNELS_SCHEMA = pa.schema(
    [
        ("recording_id", pa.string()),
        ("channel_index", pa.int64()),
        ("name", pa.string()),
        ("shaft", pa.string()),
        ("soz", pa.bool_()),
        ("resected", pa.bool_()),
        ("scale", pa.float32()),
        ("flat", pa.bool_()),
    ]
)
CLIPS_SCHEMA = pa.schema(
    [
        ("recording_id", pa.string()),
        ("clip_index", pa.int64()),
        ("start_s", pa.float64()),
        ("ictal", pa.bool_()),
        ("seizure", pa.int64()),
        ("seconds_from_onset", pa.float64()),
    ]
)
FAILURES_SCHEMA = pa.schema(
    [
        ("recording_id", pa.string()),
        ("source", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("fix", pa.string()),
        ("failed_at", pa.timestamp("us", tz="UTC")),
    ]
)
WARNINGS_SCHEMA = pa.schema(
    [
        ("recording_id", pa.string()),
        ("source", pa.string()),
        ("kind", pa.string()),
        ("message", pa.string()),
    ]
)
#: Manifest name -> schema, in commit order (recordings last: it is the completion marker).
MANIFESTS = {
    "channels": CHANNELS_SCHEMA,
    "clips": CLIPS_SCHEMA,
    "failures": FAILURES_SCHEMA,
    "warnings": WARNINGS_SCHEMA,
    "recordings": RECORDINGS_SCHEMA,
}
#: Row order of each manifest.
_SORT_KEYS = {
    "channels": ("recording_id", "channel_index"),
    "clips": ("recording_id", "clip_index"),
    "failures": ("recording_id", "source", "stage"),
    "warnings": ("recording_id", "source", "kind", "message"),
    "recordings": ("recording_id",),
}
#: Nullable columns read back as pandas' nullable dtypes.
_NULLABLE = {
    "soz": "boolean",
    "resected": "boolean",
    "flat": "boolean",
    "seizure": "Int64",
    "line_freq": "Float64",
}
_NULLABLE_FLOAT = {"seconds_from_onset": "Float64"}


def _empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def _to_table(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    if len(df) == 0:
        return schema.empty_table()
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise ValueError(f"manifest rows lack columns {missing}; expected {schema.names}.")
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)


def _to_frame(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas()
    for col, dtype in {**_NULLABLE, **_NULLABLE_FLOAT}.items():
        if col in df.columns:
            df[col] = df[col].astype(dtype)
    return df
