# syntax=docker/dockerfile:1
#
# The store, the scan worker and the publisher CLI in one image.
#
#   docker build -t plugstore .
#   docker run -p 8080:8080 -v plugstore-data:/var/lib/plugstore plugstore
#
# With no settings this is the one-command store: SQLite, blobs on disk, generated keys and
# the built-in scan worker, all under the volume. At scale, run the same image against
# PostgreSQL and S3 (PLUGSTORE_DATABASE_URL, PLUGSTORE_BLOBS_*), with shared key
# directories, and scan workers as `plugstore-scanner worker` containers; see
# docs/src/operator/production.md ("Docker").

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the registry and build directory between image builds; the binaries are
# copied out of them, since cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p plugstore-server -p plugstore-scanner -p plugstore-cli \
    && mkdir /out \
    && cp target/release/plugstore-server target/release/plugstore-scanner \
        target/release/plugstore /out/

FROM debian:bookworm-slim
# ca-certificates: S3 and CDN endpoints over TLS. The binaries link only glibc, libgcc and
# libm, which the base image has.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/plugstore plugstore \
    && install -d -o plugstore -g plugstore -m 0700 /var/lib/plugstore
COPY --from=build /out/ /usr/local/bin/
USER plugstore
WORKDIR /var/lib/plugstore
ENV PLUGSTORE_DATA_DIR=/var/lib/plugstore \
    PLUGSTORE_HTTP_BIND=0.0.0.0:8080
VOLUME ["/var/lib/plugstore"]
EXPOSE 8080
# SIGTERM drains requests and lets the scan worker finish its job (see "Shutdown" in the
# operator guide): give `docker stop` a grace period longer than the worker's timeout.
STOPSIGNAL SIGTERM
ENTRYPOINT ["plugstore-server"]
