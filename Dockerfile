# syntax=docker/dockerfile:1
#
# Both Sluice images from one build:
#
#   docker build --target sidecar  -t <registry>/sluice/sluice-sidecar:0.1.0 .
#   docker build --target operator -t <registry>/sluice/sluice-operator:0.1.0 .
#
# The images are distroless (no shell, no package manager) and run as the non-root user
# 65532. The binaries link glibc dynamically (aws-lc for TLS), so the runtime base is
# distroless "cc" (glibc, libgcc), of the same Debian release as the builder.
# Base images are named without a registry: set RUST_IMAGE and RUNTIME_IMAGE to the images
# of your registry or mirror (--build-arg RUNTIME_IMAGE=<registry>/distroless/cc-debian12:nonroot).

ARG RUST_IMAGE=rust:1.90-bookworm
ARG RUNTIME_IMAGE=distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# The rust image brings the C compiler that aws-lc-sys (TLS) builds with.
COPY . .
# Cache mounts keep the registry and the target directory between builds; the binaries are
# copied out in the same step because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-sidecar -p sluice-operator \
 && mkdir -p /out \
 && cp target/release/sluice-sidecar target/release/sluice-operator /out/

# The data plane: injected into every opted-in pod.
FROM ${RUNTIME_IMAGE} AS sidecar
COPY --from=builder /out/sluice-sidecar /usr/local/bin/sluice-sidecar
USER 65532:65532
# 4000: the API on 127.0.0.1; 4001: admin (probes, /metrics).
EXPOSE 4000 4001
ENTRYPOINT ["/usr/local/bin/sluice-sidecar"]

# The operator: controllers, control server, injection webhook. The chart runs `run`.
FROM ${RUNTIME_IMAGE} AS operator
COPY --from=builder /out/sluice-operator /usr/local/bin/sluice-operator
USER 65532:65532
# 8443: webhook; 8444: control server; 9090: admin (probes, /metrics).
EXPOSE 8443 8444 9090
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
