"""A cell's key: what tells one stateful cell from another in the RSSD.

- A named cell (`-- @name x`) has its name as its key, whatever its code.
- An unnamed cell's key comes from its code: `cell-<first 16 hex digits of the sha256 of its
  tokens>` (comments and layout left out, so editing them changes nothing). The same text
  can stand in several cells of a notebook (an `INSERT INTO log VALUES (...)` written twice),
  so the key also says which occurrence of that text this cell is: the first keeps the
  plain key (files written before occurrences existed keep replaying), the second gets
  `-2`, the third `-3`, and so on.
- Occurrences are counted per kernel session, in the order cells are applied or replayed
  (a cell that fails takes no occurrence, so running it again after a fix is still the same
  cell). A client that sends a cell id (JupyterLab does) tells a re-run of one cell from a
  new cell with the same text: a re-run keeps its occurrence. Clients that send none
  (nbclient, nbconvert, papermill, consoles) run a notebook top to bottom, where each
  execution of a text is its next occurrence.

Keys are global to the database: two notebooks on one file that hold the same cell share
its key, so the cell is applied once for both.
"""

import hashlib

from rssd_kernel import classify


def code_hash(code: str) -> str:
    """sha256 of the cell's tokens without comments or layout: edits to whitespace,
    comments and directives leave it unchanged."""
    normalised = " ".join(classify.words(code))
    return hashlib.sha256(normalised.encode("utf-8", "surrogatepass")).hexdigest()


class Keys:
    """Counts the occurrences of each cell text in one kernel session."""

    def __init__(self) -> None:
        self._taken: dict[str, list[str | None]] = {}  # code hash -> cell id per occurrence

    def _occurrence(self, digest: str, cell_id: str | None) -> int:
        taken = self._taken.get(digest, [])
        if cell_id is not None and cell_id in taken:
            return taken.index(cell_id) + 1
        return len(taken) + 1

    def key(self, digest: str, cell_id: str | None) -> str:
        """The key this cell would have if it were applied or replayed now."""
        occurrence = self._occurrence(digest, cell_id)
        base = f"cell-{digest[:16]}"
        return base if occurrence == 1 else f"{base}-{occurrence}"

    def take(self, digest: str, cell_id: str | None) -> None:
        """Mark the occurrence as used: the cell was applied or replayed."""
        taken = self._taken.setdefault(digest, [])
        if cell_id is None or cell_id not in taken:
            taken.append(cell_id)
