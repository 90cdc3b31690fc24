#!/usr/bin/env bash
# Regenerates the Swift protobuf + gRPC (grpc-swift 2) code for vigil.proto.
#
# Needs: protoc (Debian: apt-get install -y protobuf-compiler; tested with libprotoc 3.21.12).
# The two protoc plugins are built from the package's own dependencies (swift-protobuf 1.39.0,
# grpc-swift-protobuf 2.4.1), so their versions always match the runtime libraries in Package.resolved.
#
# Overridable: PACKAGE_DIR (package that depends on swift-protobuf + grpc-swift-protobuf),
#              PROTO_DIR, OUT_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE_DIR="${PACKAGE_DIR:-$ROOT}"
PROTO_DIR="${PROTO_DIR:-$ROOT/Sources/VigilAPI/Proto}"
OUT_DIR="${OUT_DIR:-$ROOT/Sources/VigilAPI/Generated}"

command -v protoc >/dev/null || { echo "protoc not found (apt-get install -y protobuf-compiler)" >&2; exit 1; }

# Build the plugins (release; slow the first time). One product per invocation.
swift build --package-path "$PACKAGE_DIR" -c release --product protoc-gen-swift
swift build --package-path "$PACKAGE_DIR" -c release --product protoc-gen-grpc-swift-2
BIN="$(swift build --package-path "$PACKAGE_DIR" -c release --show-bin-path)"

mkdir -p "$OUT_DIR"
protoc \
  --plugin=protoc-gen-swift="$BIN/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$BIN/protoc-gen-grpc-swift-2" \
  --proto_path="$PROTO_DIR" \
  --swift_out="$OUT_DIR" \
  --swift_opt=Visibility=Public \
  --grpc-swift-2_out="$OUT_DIR" \
  --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true \
  vigil.proto

echo "generated: $OUT_DIR/vigil.pb.swift $OUT_DIR/vigil.grpc.swift"
