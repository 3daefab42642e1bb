"""The command line: ``flightdeck-operator`` (also ``kubectl flightdeck``).

``main`` (the entry point: ``run``, ``doctor``, ``dev``), ``commands`` (``sidecar``, ``promote``,
``rollback``, ``promote-request``, ``promote-confirm``, ``approve``, ``ingest``, ``diff``),
``resource_tools`` and ``reference_files`` (the reference's release, pricing and policy files as
custom resources), ``doctor`` (the ledger and pointer checks).

May import: every other room; nothing imports it.
"""
