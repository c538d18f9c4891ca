"""The fleet domain, free of CoAP: fleet state and its caches, the sync
service, reconcile, impact, credentials and access policy (DESIGN §2).

The gateway (the CoAP shell) and the operator CLI both talk to this package;
nothing here imports aiocoap.
"""
