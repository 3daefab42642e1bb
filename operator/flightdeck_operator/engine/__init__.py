"""The engine: the pure decision core, FlightDeck's rules with no I/O and no Kubernetes.

Run events and pricing (``models``), evidence sums and the diff (``evidence``), the policy's
reasons and confidence (``policy``), the decision itself (``decide``), promotion windows
(``windows``), the ledger's format and hash chain (``ledger``) and the release bundle checksum
(``bundle``), and the statistics of gates that know what they know (``statistics/``: exact and
always-valid bounds for error rates, latency quantiles from a log-bucket histogram, means of cost
and latency, runs still needed). Everything is a function of its arguments; time is passed in.

May import: nothing else of this package; pydantic, cronsim and the standard library.
Import contract: ``make lint`` (import-linter) fails if it reaches for kopf, kubernetes, fastapi,
aiohttp, sqlite3 or psycopg, or for any other room.
"""
