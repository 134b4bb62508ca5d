# syntax=docker/dockerfile:1
# Karo's container image: built with the Rust toolchain, shipped on distroless.
#   docker build -t docker.io/dudizimber/karo:0.1.0 .
# The final image holds only /karo (plus glibc, CA certificates and tzdata from the
# base), runs as the nonroot user 65532 and writes nothing to disk, so it runs with a
# read-only root filesystem (the chart's default securityContext).

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and the target dir between builds; the binary
# is copied out in the same step because the target dir is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin karo \
    && install -D -m 0755 target/release/karo /out/karo

# cc-debian12 carries the glibc and libgcc the binary links against (bookworm's, as in
# the build stage) and nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/karo /karo
USER 65532:65532
# 8080: webhook (HTTP), /healthz, /readyz, /metrics; 9443: webhook over HTTPS.
EXPOSE 8080 9443
ENTRYPOINT ["/karo"]
CMD ["run"]
