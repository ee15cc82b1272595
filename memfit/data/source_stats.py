"""`memfit data inspect` for inputs that are not a PDF folder: the source a path stands for, and per-source
statistics (documents, characters, skipped input named with file and line)."""
from __future__ import annotations

from pathlib import Path

from memfit.data.readers import load_records
from memfit.data.sources import TABLE_SUFFIXES, SavedSource, TableSource, TextSource


def is_pdf_folder(path: str) -> bool:
    """True unless the path is a file or a folder of text or a saved dataset without PDFs: a missing or empty
    folder stays on the PDF pipeline, whose messages say what it expects."""
    target = Path(path)
    if target.is_file():
        return False
    if not target.is_dir() or any(p.suffix.lower() == ".pdf" for p in target.iterdir()):
        return True
    saved = any((target / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json"))
    return not saved and not any(p.suffix in TextSource.model_fields["suffixes"].default for p in target.rglob("*"))


def source_for_path(path: str, text_column: str = "text", data_format: str = "text"):
    """A table file, a save_to_disk folder (it has dataset_info.json or a DatasetDict's dataset_dict.json) or text."""
    target = Path(path)
    if target.is_file() and target.suffix in TABLE_SUFFIXES:
        return TableSource(path=path, text_column=text_column, format=data_format)
    if target.is_dir() and any((target / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json")):
        return SavedSource(path=path, text_column=text_column, format=data_format)
    return TextSource(path=path)


def render_source_stats(sources: list) -> str:
    records, issues = load_records(sources)
    lines = [f"{'source':<40}{'documents':>10}{'chat':>6}{'chars':>12}"]
    for src in sources:
        mine = [r for r in records if r.source == src.label]
        lines.append(f"{src.label[-40:]:<40}{len(mine):>10}{sum(r.messages is not None for r in mine):>6}"
                     f"{sum(len(r.content()) for r in mine):>12,}")
    if issues:
        lines += ["", f"Skipped input ({len(issues)}):", *(f"  {issue}" for issue in issues)]
    return "\n".join(lines)
