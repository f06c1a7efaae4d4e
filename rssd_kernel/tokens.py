"""DuckDB's tokenizer with character offsets.

`duckdb.tokenize` gives each token's offset in bytes of the UTF-8 text, not in characters:
after any non-ASCII character (an emoji in a string, an accented name) slicing the Python
string at those offsets cuts tokens in the wrong places. Everything in rssd that reads
tokens goes through `positions`.
"""

import duckdb


def positions(text: str) -> list[tuple[int, object]]:
    """`duckdb.tokenize(text)` with each offset in characters of `text`."""
    raw = duckdb.tokenize(text)
    if text.isascii():
        return raw
    char_at: dict[int, int] = {}
    wanted = sorted({offset for offset, _ in raw})
    byte, index = 0, 0
    for char_index, char in enumerate(text):
        while index < len(wanted) and wanted[index] <= byte:
            char_at[wanted[index]] = char_index
            index += 1
        if index == len(wanted):
            break
        byte += len(char.encode("utf-8", "surrogatepass"))
    for offset in wanted[index:]:
        char_at[offset] = len(text)
    return [(char_at[offset], kind) for offset, kind in raw]
