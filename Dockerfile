# clawproxy, clawcontrols, clawscope, clawverify and connect-sim in one small image.
#
#   docker build -t clawproxy .                  # the runtime image (the last stage)
#   docker build --target agent -t claw-agent .  # the curl example agent (docker-compose.yml)
#
# docker-compose.yml wires it up; tests/tests/deploy checks this file's stages and users.

# Pinned to the toolchain the lockfile is tested with; --locked builds exactly Cargo.lock.
ARG RUST_VERSION=1.95

# ---- build: the whole workspace is the context (policies and schemas are compiled in).
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binaries are copied out
# in the same step because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      --bin clawproxy --bin clawcontrols --bin clawscope --bin clawverify --bin connect-sim \
 && mkdir /out \
 && cp target/release/clawproxy target/release/clawcontrols target/release/clawscope \
       target/release/clawverify target/release/connect-sim /out/

# ---- agent: the curl agent of examples/agents, for docker-compose's sandboxed `agent`.
# Built here because its network has no way out but the proxy: nothing can be installed later.
FROM debian:bookworm-slim AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --no-create-home --shell /usr/sbin/nologin agent \
 && install -d -o 10001 -g 10001 -m 0755 /var/lib/claw-agent
# ^ the mount point of the agent's credentials volume, owned as in the runtime image (the
#   writer, init, runs there as 10001): whichever image first fills the fresh volume, the same.
COPY examples/agents/ /opt/agents/
USER 10002:10002
CMD ["bash", "/opt/agents/agent.sh"]

# ---- runtime (the default target): the binaries on Debian slim, nothing else. The same Debian
# release as the builder, so the binaries' glibc matches. No TLS roots are needed: the proxy
# carries its own (webpki-roots) for https upstreams.
FROM debian:bookworm-slim AS runtime
# A fixed numeric uid, so volumes, Kubernetes' runAsNonRoot and the host agree on the owner.
# The data dir and the agent's share exist here, owned by that user, so a fresh named volume
# mounted on them starts with that owner and mode (keys must stay 0600 in a 0700 dir).
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin claw \
 && install -d -o claw -g claw -m 0700 /var/lib/claw \
 && install -d -o claw -g claw -m 0755 /var/lib/claw-agent
COPY --from=build /out/ /usr/local/bin/
# The one-shot set-up (docker-compose's `init`), a fleet proxy's start (profile `fleet`) and
# the contracts init can publish.
COPY deploy/init.sh /opt/clawproxy/init.sh
COPY deploy/fleet-proxy.sh /opt/clawproxy/fleet-proxy.sh
COPY examples/policies/ /opt/clawproxy/policies/
ENV CLAW_HOME=/var/lib/claw
VOLUME ["/var/lib/claw"]
USER 10001:10001
# The proxy (agents' HTTP(S)_PROXY) and the admin listener (/healthz, /readyz, /metrics).
EXPOSE 3128 9090
# No curl in the image: bash's /dev/tcp asks the admin listener, which must be reachable on
# 127.0.0.1 inside the container (CLAW_ADMIN_PORT if it is not 9090).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${CLAW_ADMIN_PORT:-9090} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
CMD ["clawproxy", "run", "--data-dir", "/var/lib/claw", "--listen", "0.0.0.0:3128"]
