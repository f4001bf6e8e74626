# Test stand-in for the official redis image, built on a local Debian bookworm
# base (debootstrap) because no image registry is reachable where the tests run.
# Like the official image: redis-server and redis-cli on PATH, /data as the
# working directory, /usr/local/etc/redis/ for the mounted redis.conf. Debian
# bookworm gives Redis 7.0 (the course needs 7+; learners get 7.4 from the pin).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data /usr/local/etc/redis
WORKDIR /data
VOLUME /data
EXPOSE 6379
CMD ["redis-server"]
