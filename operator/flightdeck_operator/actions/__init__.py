"""The actions: promote, rollback, the diff and the reference's approval workflow, as the HTTP
sidecar and the CLI both do them (one code path, so they always agree).

Nothing is decided here: promote and rollback create a PromotionRequest and read the operator's
answer from its status; the diff reads evidence from the store and objects through the gateway.
Errors (``errors``) carry the HTTP status and message both front ends show.

May import: the store, the gateway, the API and the engine. Never the controller or a front end.
"""
