"""The web dashboard the sidecar serves under ``/ui/``: Overview, Compare, Runs, Requests and
approvals, Ledger. Server-rendered HTML (Jinja2, autoescaped) with htmx for the fragments and uPlot
for the charts, both vendored in ``static/vendor`` with their licenses: no build step and no CDN,
so it works in an air-gapped cluster. See docs/dashboard.md.

May import: what the sidecar may (actions, store, gateway, API, engine) and the sidecar's own auth,
state and route helpers.
"""
