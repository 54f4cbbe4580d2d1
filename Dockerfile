# syntax=docker/dockerfile:1
# Gatehouse: a static binary on a distroless base, running as an unprivileged user.
#   docker build -t gatehouse --build-arg VERSION=$(git describe --tags --always) .
#   docker run --name gatehouse -p 8080:8080 -v gatehouse:/data gatehouse
# Terminate TLS in front of it, or mount a certificate and set GATEHOUSE_TLS_CERT/_KEY
# (then GATEHOUSE_HEALTHCHECK_URL=https://127.0.0.1:8080/healthz).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -ldflags "-s -w -X github.com/gatehouse-dev/gatehouse.Version=${VERSION}" \
      -o /out/gatehouse ./cmd/gatehouse \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gatehouse /usr/local/bin/gatehouse
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV GATEHOUSE_DATA_DIR=/data \
    GATEHOUSE_ADDR=0.0.0.0:8080
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/gatehouse", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve"]
