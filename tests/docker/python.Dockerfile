# Test stand-in for the official python:3.11 slim image, built on a local Debian
# bookworm base (debootstrap) because no image registry is reachable where the
# tests run. Like the official image: `python` and `pip` (3.11) on PATH,
# installing into one environment every user sees (a venv in /usr/local/py).
#
# The interpreter is the one the test suite itself runs on, so it is known to
# satisfy constraints.txt (Debian bookworm's python3.11 is 3.11.2, older than
# some pinned packages accept): tests/test_docker.py copies it (binary, shared
# library, standard library) into python/, installed here under /opt/python.
# When the suite runs on Debian's own python3.11 (PYTHON_FROM=apt), python/ is
# empty and apt installs it instead.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PYTHON_FROM=copy
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libbz2-1.0 libexpat1 \
        libffi8 libgdbm6 liblzma5 libncursesw6 libreadline8 libsqlite3-0 libssl3 \
        libtirpc3 libuuid1 zlib1g \
    && if [ "$PYTHON_FROM" = apt ]; then \
        apt-get install -y --no-install-recommends python3.11 python3.11-venv; \
    fi \
    && rm -rf /var/lib/apt/lists/*
COPY python/ /opt/python/
RUN if [ "$PYTHON_FROM" = apt ]; then python=/usr/bin/python3.11; else \
        echo /opt/python/lib > /etc/ld.so.conf.d/eventlab-python.conf && ldconfig; \
        python=/opt/python/bin/python3.11; \
    fi \
    && "$python" -m venv /usr/local/py \
    && /usr/local/py/bin/python -c "import ssl, sqlite3, ctypes, lzma, bz2, readline, uuid" \
    && echo 'PATH="/usr/local/py/bin:$PATH"' > /etc/profile.d/eventlab-python.sh
# Login shells (a JupyterLab terminal) reset PATH from /etc/profile; the official
# image's Python lives in /usr/local/bin, which that PATH has, so add ours too.
ENV PATH=/usr/local/py/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# No package index here (a port nothing listens on): the lab image must build from
# the wheelhouse alone, which is what this stand-in proves.
ENV PIP_INDEX_URL=http://127.0.0.1:9/simple/
CMD ["python"]
