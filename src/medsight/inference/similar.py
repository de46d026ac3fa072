"""Similar-case search: ``medsight index`` over a labelled archive, ``predict --similar K`` against it.

An index folder holds::

    index.bin      the run's embeddings of the archive (faiss-cpu, exact inner-product search:
                   cosine similarity, as the vectors are L2-normalised)
    cases.csv      row, case, label: the case key and label of each indexed image
    index.json     what built it: the run, its checkpoint's SHA-256, the library, size and classes

The index never stores patient names or IDs: a case key is the file name without its extension,
or the manifest column the operator names (``--case-column``), never ``patient_id``. An index
answers only the model it was built with (same checkpoint hash); another is one clear error.
An index built into ``RUN/index`` is found there by ``predict --similar K`` and ``medsight serve``.

Exact search, not a graph index: ``bench/similar_index.py`` measured hnswlib, faiss's HNSW and
usearch at 0.6-1.2 ms per query over 100,000 vectors but with 7% recall@5 on its random vectors,
while exact search found every true neighbour in 16 ms. For archives of hospital size a missed
similar case costs more than 15 ms; hnswlib also builds from source only (no wheels).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from medsight.data.loading import load_item
from medsight.data.registry import build_dataset, dataset_kind
from medsight.data.types import SPLITS, Item
from medsight.errors import ConfigError, InputFileError, MedsightError
from medsight.inference.embed import case_key, embed_batches, load_encoder
from medsight.inference.engine import file_sha256
from medsight.inference.load import LoadedRun
from medsight.inference.predict import model_input
from medsight.runtime.run_folder import checkpoint_path
from medsight.utils.atomic import atomic_path, write_json, write_text
from medsight.utils.extras import require

log = logging.getLogger(__name__)
INDEX_FILE, CASES_FILE, META_FILE = "index.bin", "cases.csv", "index.json"
RUN_INDEX = "index"  # `medsight index RUN DATA --out RUN/index`: predict and serve find it without --index
NEVER_KEYS = {"patient_id", "patient", "patient_name", "patientid", "patientname", "name"}


def _faiss():
    require("faiss", extra="similar", feature="similar-case search (medsight index, predict --similar)")
    import faiss

    return faiss


@dataclass
class SimilarIndex:
    """A loaded index: ``query(vectors, k)`` -> per vector a list of ``{case, label, distance}``."""

    folder: Path
    meta: dict
    cases: list[str]
    labels: list[str]
    _index: object

    def query(self, vectors: np.ndarray, k: int) -> list[list[dict]]:
        k = min(int(k), len(self.cases))
        if k < 1:
            return [[] for _ in range(len(vectors))]
        sims, rows = self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        # cosine distance, 0 for the same direction
        return [[{"case": self.cases[r], "label": self.labels[r], "distance": round(max(1.0 - float(c), 0.0), 6)}
                 for r, c in zip(rs, cs) if r >= 0] for rs, cs in zip(rows, sims)]


def checkpoint_hash(run: LoadedRun) -> str:
    return file_sha256(checkpoint_path(run.run_dir))


def load_index(folder: str | Path, run: LoadedRun) -> SimilarIndex:
    """The index in ``folder``, checked to be built with ``run``'s model (one error line otherwise)."""
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        raise InputFileError(folder, f"not a medsight index (no {META_FILE}); build one with medsight index")
    meta = json.loads((folder / META_FILE).read_text())
    if meta.get("checkpoint_sha256") != checkpoint_hash(run):
        raise MedsightError(f"{folder}: built with another model (checkpoint {str(meta.get('checkpoint_sha256'))[:12]}"
                            f", {meta.get('run')}), not {run.run_dir}'s; rebuild it: medsight index {run.run_dir} "
                            f"DATA --out {folder}")
    with open(folder / CASES_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        index = _faiss().read_index(str(folder / INDEX_FILE))
    except RuntimeError as exc:  # faiss reports unreadable files as RuntimeError
        raise InputFileError(folder / INDEX_FILE, f"not a readable index ({str(exc).splitlines()[0][:120]})") from None
    if index.ntotal != len(rows):
        raise InputFileError(folder, f"{INDEX_FILE} holds {index.ntotal} vectors but {CASES_FILE} {len(rows)} cases")
    return SimilarIndex(folder, meta, [r["case"] for r in rows], [r["label"] for r in rows], index)


def archive_items(run: LoadedRun, data: Path, case_column: Optional[str]) -> tuple[list[Item], list[str], list[str]]:
    """Every item of every split of a labelled data set, their case keys and the class names."""
    if case_column is not None and case_column.lower() in NEVER_KEYS:
        raise ConfigError(f"--case-column {case_column}: patient names and IDs are never stored in an index; "
                          "name a column of case keys")
    data = Path(data)
    cfg = run.cfg.data.model_copy(update={"dataset": dataset_kind(data), "path": data, "folds": 0, "images": None,
                                          "clinical": []})
    split = build_dataset(cfg, run.cfg.train.seed, unsplit="test")
    if not split.class_names:
        raise InputFileError(data, "no labels: an index of similar cases needs a labelled archive")
    items = [it for s in SPLITS for it in split.split(s)]
    by_path = _case_column(data, case_column) if case_column else {}
    keys = [by_path[str(it["id"])] if by_path else
            case_key(it["image"]) if isinstance(it["image"], str) else str(it.get("id")) for it in items]
    return items, keys, split.class_names


def _case_column(manifest: Path, column: str) -> dict[str, str]:
    if manifest.suffix.lower() not in (".csv", ".tsv"):
        raise ConfigError("--case-column names a column of a manifest CSV")
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or column not in rows[0]:
        raise InputFileError(manifest, f"no column {column!r} (--case-column)")
    return {row["path"].strip(): row[column].strip() for row in rows if row.get("path")}


def build_index(run_dir: str | Path, data: Path, out: Path, case_column: Optional[str] = None) -> dict:
    """Embed every image of ``data`` with the run's model and write the index folder ``out``."""
    run = load_encoder(run_dir)
    items, keys, names = archive_items(run, data, case_column)
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []

    def images() -> Iterator:
        for i, item in enumerate(items):
            try:
                x = model_input(run, load_item(item, run.cfg.data.require_deidentified)["image"])
            except MedsightError as exc:  # a bad file is listed, the archive still indexed
                skipped.append((str(item.get("id", i)), getattr(exc, "problem", str(exc))))
                continue
            kept.append(i)
            yield x

    vectors = np.concatenate(list(embed_batches(run, images()))) if items else np.zeros((0, 1), np.float32)
    if not kept:
        raise MedsightError(f"{data}: no readable image to index")
    faiss = _faiss()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    out = Path(out)
    with atomic_path(out / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["row", "case", "label"])
    writer.writerows([r, keys[i], names[int(items[i]["label"])]] for r, i in enumerate(kept))
    write_text(out / CASES_FILE, text.getvalue())
    meta = {"library": "faiss-cpu (IndexFlatIP, exact)", "metric": "cosine", "dim": int(vectors.shape[1]), "count": len(kept),
            "class_names": names, "run": str(Path(run_dir).resolve()), "checkpoint_sha256": checkpoint_hash(run),
            "case_keys": f"manifest column {case_column}" if case_column else "file name stem (or data set id)",
            "skipped": [{"case": c, "problem": p} for c, p in skipped]}
    write_json(out / META_FILE, meta)  # last: an index without it is not taken for a complete one
    return meta


def index_folder(run_dir: str | Path, folder: Optional[Path] = None) -> Optional[Path]:
    """The index to use: ``folder`` when given, else ``RUN/index`` when one was built there, else None."""
    if folder is not None:
        return Path(folder)
    beside = Path(run_dir) / RUN_INDEX
    return beside if (beside / META_FILE).is_file() else None


def open_index(run: LoadedRun, k: int, folder: Optional[Path]) -> Optional[SimilarIndex]:
    """The index ``predict --similar K [--index FOLDER]`` asks for (None when K is 0), checked against ``run``."""
    if not k:
        return None
    found = index_folder(run.run_dir, folder)
    if found is None:
        raise ConfigError(f"--similar K needs --index FOLDER, or an index in {Path(run.run_dir) / RUN_INDEX} "
                          "(built by medsight index)")
    return load_index(found, run)


def similar_cases(run: LoadedRun, index: SimilarIndex, images, k: int) -> list[list[dict]]:
    """The ``k`` indexed cases nearest to each model-space image ``(N, C, *S)``: ``{case, label, distance}``."""
    from medsight.inference.embed import embed

    return index.query(embed(run, images), k)
