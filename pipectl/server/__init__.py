"""The pipectl server: the operations layer (:class:`pipectl.client.Client`)
over HTTP, so that people and programs use a store without its credentials.

``pipectl server`` serves the JSON API (:mod:`.api`, with its OpenAPI
document at ``/openapi.json``) on one port, guarded by bearer tokens
(:mod:`.auth`).
"""
