"""The admission webhook the operator serves to the API server (HTTPS, in kopf's event loop).

``admission`` (AdmissionReview models and response builders), ``identity`` (who created an object),
``handlers`` (the three admission handlers), ``certs`` (a generated CA and serving certificate),
``server`` (the aiohttp server and the caBundle repair task). See docs/security.md. The controller
wires it to the running operator (``controller.admission_context``).

May import: the gateway, the API and the engine.
"""
