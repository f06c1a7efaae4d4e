"""A cell's key: what tells one stateful cell from another in the RSSD.

- A named cell (`-- @name x`) has its name as its key, whatever its code.
- An unnamed cell's key comes from its code: `cell-<first 16 hex digits of the sha256 of its
  tokens>` (comments and layout left out, so editing them changes nothing). The same text
  can stand in several cells of a notebook (an `INSERT INTO log VALUES (...)` written twice),
  so the key also says which occurrence of that text this cell is: the first keeps the
  plain key (files written before occurrences existed keep replaying), the second gets
  `-2`, the third `-3`, and so on.
- Occurrences are counted per kernel session, in the order cells are executed, whatever
  their outcome (so a second run of a notebook gives every cell the key it had in the
  first, even where an earlier copy of the text failed). A client that sends a cell id
  (JupyterLab does) tells a re-run of one cell from a new cell with the same text: a re-run
  keeps its occurrence, and a new cell takes one once it has run successfully (a failed
  attempt, deleted and typed again in another cell, would otherwise shift the keys that a
  headless run of the saved notebook sees). Clients that send none (nbclient, nbconvert,
  papermill, `rssd run`, consoles) run a notebook top to bottom, where each execution of a
  text is its next occurrence.

Keys are global to the database: two notebooks on one file that hold the same cell share
its key, so the cell is applied once for both.
"""

import functools
import hashlib

import duckdb


@functools.lru_cache(maxsize=256)
def code_hash(code: str) -> str:
    """sha256 of the cell's tokens without comments or layout: edits to whitespace,
    comments and directives leave it unchanged.

    Computed exactly as rssd-kernel 0.1 did, so that the keys of existing files keep
    replaying: it cut the text at `duckdb.tokenize`'s offsets, which are byte offsets, so
    for text with non-ASCII characters the "tokens" are cut in odd places (the hash is still
    a deterministic function of the text; only layout-insensitivity is lost there)."""
    positions = duckdb.tokenize(code)
    words = []
    for index, (start, kind) in enumerate(positions):
        if str(kind).endswith("comment"):
            continue
        end = positions[index + 1][0] if index + 1 < len(positions) else len(code)
        words.append(code[start:end].strip())
    return hashlib.sha256(" ".join(words).encode("utf-8", "surrogatepass")).hexdigest()


class Keys:
    """Counts the occurrences of each cell text in one kernel session."""

    def __init__(self) -> None:
        self._taken: dict[str, list[str | None]] = {}  # code hash -> cell id per occurrence

    def key(self, digest: str, cell_id: str | None) -> str:
        """The key of this execution of a cell whose code hashes to `digest`. Without a
        cell id, the execution takes the next occurrence now, whatever its outcome."""
        taken = self._taken.setdefault(digest, [])
        if cell_id is not None and cell_id in taken:
            occurrence = taken.index(cell_id) + 1
        elif cell_id is not None:
            occurrence = len(taken) + 1  # taken by `ran` once it has run successfully
        else:
            taken.append(None)
            occurrence = len(taken)
        base = f"cell-{digest[:16]}"
        return base if occurrence == 1 else f"{base}-{occurrence}"

    def ran(self, digest: str, cell_id: str | None) -> None:
        """A cell with an id ran successfully (applied, replayed or read): from now on it
        keeps its occurrence. A failed run of a new cell keeps none, so that a fixed copy of
        it typed in another cell takes its place, as a headless run of the saved notebook
        will see it."""
        taken = self._taken.setdefault(digest, [])
        if cell_id is not None and cell_id not in taken:
            taken.append(cell_id)
