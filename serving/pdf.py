"""A report page as PDF for the patient file: headless Chromium's print-to-PDF.

Chromium (Debian's ``chromium`` package, ``apt-get install chromium``) renders the very HTML page
the browser shows, figures included; nothing is sent anywhere (local files only, background
networking off).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ingest.errors import SozkitError

logger = logging.getLogger(__name__)

#: Browsers tried in order when none is given.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-pdf-header-footer",
)  # fmt: skip


def find_chromium() -> str | None:
    """Path of a Chromium-family browser on ``PATH``, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def print_pdf(
    page: str | os.PathLike,
    pdf: str | os.PathLike | None = None,
    *,
    chromium: str | None = None,
    timeout_s: float = 120.0,
) -> Path:
    """Print an HTML page to PDF with headless Chromium.

    Parameters
    ----------
    page : path-like
        The HTML file (its figures are loaded relative to it).
    pdf : path-like or None
        Output; default: the page's path with ``.pdf``.
    chromium : str or None
        The browser; default: :func:`find_chromium`.
    timeout_s : float
        Give up after this long.

    Raises
    ------
    SozkitError
        No browser, or it wrote no PDF (its last error lines are given).
    """
    page = Path(page).resolve()
    pdf = Path(pdf) if pdf is not None else page.with_suffix(".pdf")
    browser = chromium or find_chromium()
    if browser is None:
        raise SozkitError(
            "no Chromium found to print the PDF. Fix: apt-get install chromium (or leave out "
            "--pdf)."
        )
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sozkit-chromium-") as profile:
        cmd = [
            browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf.resolve()}", page.as_uri(),
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise SozkitError(f"{browser} did not print {page} within {timeout_s:g} s.") from e
    if not pdf.is_file() or pdf.stat().st_size == 0:
        raise SozkitError(
            f"{browser} wrote no PDF for {page} (exit {proc.returncode}): {proc.stderr[-800:]}"
        )
    logger.info("printed %s", pdf)
    return pdf


#: Figure kinds of a report page (file-name suffixes) and what each shows.
FIGURE_KINDS = {
    "brain": "contacts on the glass brain",
    "traces": "SEEG traces, the windows that drove each call shaded",
    "heatmap": "probability of each contact over the recording",
    "folds": "uncertainty intervals across the fold models",
    "models": "uncertainty intervals across the models",
    "shafts": "contacts by electrode shaft",
}


def screenshot_figures(
    page: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    kinds=tuple(FIGURE_KINDS),
    chromium: str | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Path]:
    """One Chromium screenshot per figure kind of a report page (the first figure of each).

    Each figure is rendered by the browser alone on a page of its own size, as it appears in the
    report. Kinds the page does not hold are left out.

    Returns
    -------
    dict kind -> Path
        ``out_dir/<kind>.png``.
    """
    import re

    from PIL import Image

    page = Path(page).resolve()
    browser = chromium or find_chromium()
    if browser is None:
        raise SozkitError("no Chromium found for the screenshots. Fix: apt-get install chromium.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    srcs = re.findall(r"src='(figures/[^']+\.png)'", page.read_text(encoding="utf-8"))
    shots = {}
    for kind in kinds:
        src = next((s for s in srcs if s.endswith(f"__{kind}.png")), None)
        if src is None:
            continue
        w, h = Image.open(page.parent / src).size
        probe = page.with_name(f".shot-{kind}.html")
        probe.write_text(
            f"<!DOCTYPE html><html><body style='margin:0'><img src='{src}'></body></html>",
            encoding="utf-8",
        )
        try:
            with tempfile.TemporaryDirectory(prefix="sozkit-chromium-") as profile:
                cmd = [
                    browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--hide-scrollbars",
                    f"--window-size={w},{h}", f"--screenshot={(out / f'{kind}.png').resolve()}",
                    probe.as_uri(),
                ]  # fmt: skip
                subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise SozkitError(f"{browser} did not render {src} within {timeout_s:g} s.") from e
        finally:
            probe.unlink(missing_ok=True)
        if (out / f"{kind}.png").is_file():
            shots[kind] = out / f"{kind}.png"
    return shots
