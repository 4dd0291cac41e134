"""The S3 gateway: pipectl's branches and commits as S3 buckets, after
Pachyderm's (``src/server/pfs/s3``), served by ``pipectl server
--s3-gateway-port`` beside the JSON API, over the same operations layer
and tokens.

Modules: :mod:`.buckets` (bucket names), :mod:`.sigv4` and :mod:`.sigv2`
(AWS signature checks), :mod:`.chunked` and :mod:`.body` (request
bodies), :mod:`.xml` and :mod:`.errors` (S3's documents), :mod:`.listing`
and :mod:`.ranges` (ListObjects pages, Range headers), :mod:`.uploads`
(multipart uploads kept in the store), :mod:`.routes` (the operations)
and :mod:`.app` (the ASGI app).
"""

from .app import create_s3_app

__all__ = ["create_s3_app"]
