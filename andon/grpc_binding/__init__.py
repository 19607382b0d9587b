"""The A2A 1.0 gRPC binding (`andon serve --grpc-port`): needs the `grpc` extra
(`pip install 'andon[grpc]'`); nothing else in andon imports it."""
