# syntax=docker/dockerfile:1.7
#
# starledger: one binary (`starledger`) on a slim Debian runtime.
#
#   docker build -t starledger .
#   docker run --rm starledger demo            # embedded SQLite, no servers needed
#   docker compose up -d --build               # PostgreSQL + Redis + nginx, see docker-compose.yml
#
# Needs BuildKit (the default builder since Docker Engine 23 and in Compose v2) for the
# cache mounts below.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder

# The slim Rust image already has gcc and libc headers, which is all the C the build needs
# (bundled SQLite, ring, mimalloc). No OpenSSL: everything TLS is rustls.
WORKDIR /src

# Dependency caching: BuildKit cache mounts for the cargo registry, git checkouts and
# target/, not the "copy manifests, build a dummy main.rs, then copy sources" trick. In a
# four-crate workspace the dummy needs a stub per member and its fingerprints can outlive
# the real sources (a stale stub binary in the image); sqlx::migrate! also embeds
# migrations/ at compile time. With cache mounts cargo's own incremental logic decides what
# to rebuild, workspace crates included. Trade-off: cache mounts stay on the build host and
# are not exported by --cache-to, so a fresh CI runner builds from scratch (a few minutes).
#
# Only what the build reads is copied. A new workspace member must be added here (cargo
# then fails loudly on the missing manifest, never silently).
COPY Cargo.toml Cargo.lock ./
COPY ledger ledger
COPY projections projections
COPY gateway gateway
COPY tests tests
COPY migrations migrations
COPY schemas schemas

# target/ lives in the cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,id=starledger-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=starledger-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=starledger-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p starledger-gateway --bin starledger \
    && install -D -m 0755 target/release/starledger /out/starledger

# ---------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# CA certificates for outbound TLS (Heleket, Telegram, Fragment, TLS PostgreSQL). Nothing
# else: rustls and the bundled SQLite need only libc. Debian package versions are not
# pinned: a pinned version disappears from the archive at the next point release and the
# build breaks; the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged user with a fixed uid/gid (10001) so volume ownership is predictable and
# orchestrators can check runAsNonRoot. /var/lib/starledger is its home and working
# directory: the embedded SQLite default (`starledger.db`, relative) lands there, and a
# named volume mounted there inherits this ownership on first use.
RUN groupadd --system --gid 10001 starledger \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/starledger --shell /usr/sbin/nologin starledger \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/starledger

COPY --from=builder /out/starledger /usr/local/bin/starledger
# HTTP probe in bash (/dev/tcp) rather than curl: bash is already in the base image, curl
# would add ~10 packages (and their CVEs) for one GET. Usage: starledger-healthcheck [/path]
COPY --chmod=0755 deploy/starledger-healthcheck /usr/local/bin/starledger-healthcheck

USER 10001:10001
WORKDIR /var/lib/starledger

# The app's defaults, spelled out because the health check and EXPOSE depend on them.
ENV WEBHOOK_HOST=0.0.0.0 \
    WEBHOOK_PORT=8001
EXPOSE 8001

# Liveness only (/healthz: the process serves HTTP). docker-compose.yml overrides it with
# /readyz (database, Redis, projections). One-off commands (migrate, audit, ...) are not
# servers: compose disables the check for them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["starledger-healthcheck", "/healthz"]

# `serve` drains requests and flushes the batch writer on SIGTERM; give it time to do so
# (compose: stop_grace_period). The binary is PID 1 and spawns no children, so no init is
# needed to reap zombies.
STOPSIGNAL SIGTERM
ENTRYPOINT ["starledger"]
CMD ["serve"]
