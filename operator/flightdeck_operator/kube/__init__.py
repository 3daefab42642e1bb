"""The gateway: the one room that talks to the Kubernetes API through the official client.

``gateway`` (custom objects, status, Events, token and access reviews, the webhook's caBundle),
``webhook_configurations`` (registering the webhook by URL for local runs) and ``errors`` (the
API's failures as our exceptions: no other room sees ``ApiException``). Calls block; callers
run them in worker threads. kopf's own watching and patching is kopf's business, not ours.

May import: the engine and the API. Only this room imports ``kubernetes``.
"""
