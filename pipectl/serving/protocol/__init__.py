"""KServe's published v2 gRPC protocol (``grpc_predict_v2.proto``, Apache-2.0,
from the KServe project's ``docs/predict-api/v2``) and the message classes
protoc generated from it (``grpc_predict_v2_pb2``; ``make proto``
regenerates them). The service itself is in :mod:`pipectl.serving.grpc_v2`."""
