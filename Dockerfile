# billpush: one image for every role (serve, worker, scheduler, mock-gateway).
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin billpush

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/billpush /usr/local/bin/billpush
COPY templates ./templates
COPY config ./config
ENTRYPOINT ["billpush"]
