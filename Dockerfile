# billpush: one image for every role (serve, worker, scheduler, mock-gateway).
# Dependencies are built in a layer of their own, cached until Cargo.toml or Cargo.lock change.
FROM rust:1-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/domain.rs \
 && cargo build --release --locked --bin billpush \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
COPY migrations ./migrations
COPY templates ./templates
COPY data ./data
# Touch the sources so cargo rebuilds billpush itself over the placeholder of the cached layer.
RUN touch src/main.rs src/lib.rs \
 && CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin billpush

FROM debian:trixie-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home billpush
WORKDIR /app
COPY --from=build /src/target/release/billpush /usr/local/bin/billpush
COPY config ./config
USER billpush
# Healthy when the database, and the broker where configured, answer.
HEALTHCHECK --interval=15s --timeout=12s --retries=3 CMD ["billpush", "--config", "config/production.toml", "healthcheck"]
ENTRYPOINT ["billpush"]
