"""Model serving: the newest model of a repo branch, answered over HTTP.

``pipectl serve --repo train --branch master --model iris --handler iris_model.py``
downloads the files of the branch's head commit into a temporary directory,
hands that directory to the *handler* (a Python file defining
``load(model_dir)``, TorchServe's custom-handler idea) and answers
predictions over HTTP with the object it returns. A background task polls the
branch head and swaps a newly landed model in without failing a request.

Modules (each small, the lower ones free of any web framework):

- :mod:`.errors`: :class:`ServingError`, an HTTP status with a one-line message.
- :mod:`.handler`: import a handler file and check it defines ``load``.
- :mod:`.model`: :class:`ModelVersion` (one loaded model commit) and
  :class:`ModelSlot` (the current version, refreshed from the branch head).
- :mod:`.instances`: JSON and CSV request bodies to rows of numbers.
- :mod:`.v2`: the KServe Open Inference Protocol (v2) request and response.
- :mod:`.batching`: dynamic batching, concurrent requests' rows as one forward pass.
- :mod:`.metrics`: Prometheus metrics (prometheus_client).
- :mod:`.predlog`: predictions logged as versioned data (``--log-repo``).
- :mod:`.runtime`: the served models (one or several), shared by both protocols.
- :mod:`.app`: the Starlette application (routes below); :mod:`.grpc_v2`
  the KServe v2 gRPC service (grpcio, messages generated into
  :mod:`.protocol` from KServe's published proto); :mod:`.server` runs
  both on one event loop under uvicorn.

HTTP API (MXNet Model Server / TorchServe inference and management, plus
KServe v2)::

    GET  /ping                      {"status": "Healthy"} | 503 until a model is loaded
    GET  /metrics                   Prometheus metrics (see :mod:`.metrics`)
    GET  /models                    {"models": [{"modelName", "modelUrl", "modelVersion"}]}
    GET  /models/{name}             [{... "modelVersion", "provenance", "features", "classes"}]
    POST /predictions/{name}        JSON or text/csv rows -> {"predictions", "probabilities", "model_version"}
    POST /predictions/{name}/{v}    the same, from model version v (any model commit id of the repo)
    GET  /v2/health/live | ready    liveness | readiness (503 until a model is loaded)
    GET  /v2/models/{name}[/ready]  model metadata (inputs, outputs, versions)
    POST /v2/models/{name}/infer    {"inputs": [tensor...]} -> {"outputs": [tensor...], "model_version"}
    .../v2/models/{name}/versions/{v}[/ready|/infer]   the same, of model version v

gRPC (``--grpc-port``): ``inference.GRPCInferenceService``, KServe v2.

Every prediction response carries the model version (the model commit id),
in its body and in the ``X-Model-Version`` header.

The platform core never imports numpy or MXNet: only the handler does, and
it is imported when the server starts. Starlette, uvicorn and grpcio are
imported only when the server runs (``serving/requirements.txt``).
"""
