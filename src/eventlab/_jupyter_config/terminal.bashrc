# JupyterLab's terminal for the course: the learner's own ~/.bashrc first, then
# the environment that runs the course in front of PATH, so `eventlab` is found
# even when a login profile (Debian's /etc/profile) has reset PATH.
# shellcheck disable=SC1090,SC1091
[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc
[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"
if [ -n "${EVENTLAB_BIN:-}" ]; then
    export PATH="$EVENTLAB_BIN:$PATH"
fi
