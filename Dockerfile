# The sensor, the consumer, the archive and the report in one small image: build with the Rust
# toolchain, run on a slim Debian as a non-root user. Used by docker-compose.yml.
FROM rust:1.95.0-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential perl python3 zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN cargo build --release --locked --bin weather-producer --bin weather-consumer --bin weather-archive --bin weather-report

FROM debian:12.12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home weather \
    && mkdir /out && chown weather /out
COPY --from=build /app/target/release/weather-producer /usr/local/bin/weather-producer
COPY --from=build /app/target/release/weather-consumer /usr/local/bin/weather-consumer
COPY --from=build /app/target/release/weather-archive /usr/local/bin/weather-archive
COPY --from=build /app/target/release/weather-report /usr/local/bin/weather-report
USER weather
WORKDIR /out
