"""Request bodies of ``POST /score``, streamed, bounded while they are read, in bounded memory.

A body is never read whole before it is checked. :func:`read_body` pulls it chunk by chunk from
Starlette's ``request.stream()``, refusing it (413) the moment it passes its cap (the declared
``Content-Length`` is checked first, but a chunked body is counted as it arrives) and giving up
(408) when it takes longer than its time budget, so a slow client cannot hold a request slot
for ever. JSON bodies (at most :data:`MAX_JSON_BYTES`) are parsed by the pydantic model
:class:`ScoreRequest` (its parser bounds nesting: a deeply nested body is a 400, not a
recursion error). Uploads are written to disk as they arrive: raw ``application/octet-stream``
bodies directly, ``multipart/form-data`` through python-multipart's streaming parser
(:class:`MultipartUpload`), so memory stays one chunk whatever the file's size.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

#: Largest JSON body of ``POST /score`` (bytes).
MAX_JSON_BYTES = 64 * 1024
#: Time budget of a JSON body (seconds): 64 KiB arrive in well under it on any link.
JSON_BODY_TIMEOUT_S = 10.0
#: Single-file recordings an upload may be (BrainVision needs its companions: a path instead).
UPLOAD_SUFFIXES = (".edf", ".bdf", ".fif", ".gdf")


class RequestError(Exception):
    """A 4xx/5xx answer with what went wrong and how to fix it (turned into JSON by the app)."""

    def __init__(self, status: int, error: str, detail: str, fix: str = "") -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.fix = status, error, detail, fix


class ScoreRequest(BaseModel):
    """JSON body of ``POST /score``. Unknown fields are refused (a misspelt or unsupported
    option such as ``"model"`` would otherwise be ignored silently)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Recording file, relative to a data root or inside one.")
    line_freq: float | None = Field(
        default=None, description="Power-line frequency (50/60 Hz) if the file has none."
    )
    explain: bool = Field(
        default=False,
        description="Also return the occlusion attribution per window (costs about one more "
        "scoring pass; query ?explain=true for uploads).",
    )
    explain_contacts: list[str] | None = Field(
        default=None, description="Contacts to explain (default: the top 5 and clinical SOZ)."
    )


def too_large(size: int, cap: int, what: str = "the upload") -> RequestError:
    return RequestError(
        413, "request too large", f"{what} has more than {cap} bytes ({size} seen).",
        "send a path under a data root instead, or restart the service with a larger "
        "--max-upload-mb." if what == "the upload" else 'send {"path": ...} only.',
    )  # fmt: skip


def unsupported_type(ctype: str) -> RequestError:
    return RequestError(
        415, "unsupported content type", f"Content-Type {ctype or '(none)'} is not accepted.",
        'send JSON {"path": ...}, or the file as application/octet-stream or '
        "multipart/form-data (field 'file').",
    )  # fmt: skip


async def read_body(
    request, *, cap: int, timeout_s: float, sink: Callable[[bytes], Any], what: str
) -> int:
    """Stream ``request``'s body into ``sink(chunk)``; refuse past ``cap`` or ``timeout_s``.

    Returns
    -------
    int
        Bytes received.

    Raises
    ------
    RequestError
        413 over the cap (declared or counted while reading), 408 too slow.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise too_large(int(declared), cap, what)
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise too_large(size, cap, what)
                if chunk:
                    sink(chunk)
    except ClientDisconnect:  # the client left, or the proxy cut the body at its cap
        raise RequestError(
            400, "body not received", f"{what} ended after {size} bytes: the client left.",
            "send the whole body.",
        ) from None  # fmt: skip
    except TimeoutError:
        raise RequestError(
            408, "request body too slow",
            f"{what} was not received within {timeout_s:g} s ({size} bytes arrived).",
            "send the whole body at once, or restart the service with a longer "
            "--body-timeout-s for slow links.",
        ) from None  # fmt: skip
    return size


async def read_json(request) -> ScoreRequest:
    """The JSON body as a :class:`ScoreRequest` (400 when it is not one)."""
    parts: list[bytes] = []
    await read_body(
        request, cap=MAX_JSON_BYTES, timeout_s=JSON_BODY_TIMEOUT_S, sink=parts.append,
        what="a JSON body",
    )  # fmt: skip
    try:
        return ScoreRequest.model_validate_json(b"".join(parts))
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise RequestError(
                400, "malformed JSON", f"the body is not valid JSON: {errors[0]['msg']}.",
                'send {"path": "<file under a data root>"}.',
            ) from None  # fmt: skip
        fields = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors)
        unknown = [str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden"]
        if unknown:
            raise RequestError(
                400, "unknown field", f"the JSON body has unknown field(s) {', '.join(unknown)}; "
                'it takes "path" and "line_freq" only.',
                "drop them (the model and folds are chosen when the service starts: soz serve "
                "--model/--fold).",
            ) from None  # fmt: skip
        raise RequestError(
            400, "missing path", f'the JSON body needs a string field "path" ({fields}).',
            'send {"path": "sub-01/ieeg/sub-01_task-ictal_ieeg.edf"}.',
        ) from None  # fmt: skip


def upload_path(folder: Path, filename: str) -> Path:
    """Where an upload named ``filename`` is written (its suffix checked, its stem sanitised)."""
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise RequestError(
            400, "unsupported file type",
            f"filename={filename!r}: uploads must be single-file recordings "
            f"({', '.join(UPLOAD_SUFFIXES)}).",
            "BrainVision (.vhdr + .eeg + .vmrk) needs its companions: put it under a data "
            "root and send its path.",
        )  # fmt: skip
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(filename).stem).strip("-.") or "upload"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}{suffix}"


class MultipartUpload:
    """Streams a ``multipart/form-data`` body's ``file`` field to disk (python-multipart).

    The form is exactly one part, the field ``file``: a second ``file``, a part of any other
    name or one without a name is a 400 naming it, refused as soon as its headers are read.

    Parameters
    ----------
    content_type : str
        The request's Content-Type header (with its boundary).
    folder : Path
        Where the file is written (:func:`upload_path`).

    Attributes
    ----------
    path : Path or None
        The written file, once its part has been seen.
    """

    def __init__(self, content_type: str, folder: Path) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise RequestError(
                400, "malformed multipart", "the multipart/form-data body has no boundary.",
                "let the HTTP client build the form (curl -F file=@x.edf).",
            )  # fmt: skip
        self.folder = folder
        self.path: Path | None = None
        self._done = False
        self._n_files = 0
        self._fh = None
        self._field, self._value = bytearray(), bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._headers.clear,
                "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._data,
                "on_part_end": self._part_end,
            },
        )

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        if name != b"file":
            what = (
                "a part without a field name"
                if name is None
                else (f"an unknown field {name.decode('utf-8', 'replace')!r}")
            )
            raise RequestError(
                400, "unexpected form field",
                f"the multipart body has {what}; the form takes one field, 'file'.",
                "send the recording alone as field 'file'; options go in the query "
                "(?line_freq=50&explain=true).",
            )  # fmt: skip
        if self._n_files:
            raise RequestError(
                400, "duplicate form field",
                "the multipart body has more than one 'file' field; one recording per request.",
                "send each recording in its own request.",
            )  # fmt: skip
        self._n_files += 1
        filename = params.get(b"filename", b"upload.edf").decode("utf-8", "replace")
        self.path = upload_path(self.folder, filename or "upload.edf")
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed at the part's end

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._fh is not None:
            self._fh.write(data[start:end])

    def _part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh, self._done = None, True

    def write(self, chunk: bytes) -> None:
        """Feed one chunk of the body."""
        try:
            self._parser.write(chunk)
        except RequestError:
            raise
        except Exception as e:  # python-multipart's parse errors
            raise RequestError(
                400, "malformed multipart", f"the form cannot be parsed: {e}."
            ) from e

    def finish(self) -> Path:
        """The uploaded file, after the whole body was fed."""
        try:
            self._parser.finalize()
        except Exception as e:
            raise RequestError(400, "malformed multipart", f"the form is truncated: {e}.") from e
        finally:
            if self._fh is not None:
                self._fh.close()
        if self.path is None or not self._done:
            raise RequestError(
                400, "missing file", "the multipart body has no complete 'file' field.",
                "send the recording in a form field named 'file'.",
            )  # fmt: skip
        return self.path
