# syntax=docker/dockerfile:1
#
# One image for the whole mesh: store-svc, ingest-svc, sync-svc, health-svc
# and the `edge` operator binary. One image is one thing to pre-cache at an
# offline site, and the services share most of their code, so five images
# would mostly repeat each other. Kubernetes picks the service with
# `command:` (see k8s/base); `docker run` without one runs `edge up`.
#
#   docker build -t edge-mesh/edge:0.1.0 .
#
# protoc comes from a build dependency (protoc-bin-vendored), and SQLite and
# jemalloc are compiled in, so the build stage needs the Rust toolchain, gcc
# and make (jemalloc's build runs its configure script and make).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
# make pinned to bookworm's, so a rebuild gets the same tool.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin edge --bin store-svc --bin ingest-svc --bin sync-svc --bin health-svc \
    && mkdir -p /out \
    && cp target/release/edge target/release/store-svc target/release/ingest-svc \
          target/release/sync-svc target/release/health-svc /out/

# glibc, libgcc and CA certificates (for an https cloud), no shell, no
# package manager; runs as uid 65532. Built on the same Debian release, so
# the binaries' glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# SQLite's data directory when the mesh runs on the embedded default; mount
# a volume here (the root file system can stay read-only). `edge up` also
# keeps the site CA (tls/ca.pem) and the operator token (operator.token)
# here; give it --tls-san with the address gateways dial.
WORKDIR /data
ENV EDGE_DATA_DIR=/data
# gRPC over TLS: ingest, store, sync, health (`edge up` serves store and
# sync on loopback unless EDGE_STORE_ADDR / EDGE_SYNC_ADDR say otherwise);
# the plaintext operations port: /metrics, /healthz, /readyz.
EXPOSE 50051 50052 50053 50054 9464
ENTRYPOINT ["edge"]
CMD ["up"]
