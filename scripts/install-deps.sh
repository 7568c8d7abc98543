#!/bin/sh
# install-deps.sh — makes sure the build's tools and libraries are present.
# As root on Debian/Ubuntu it installs what is missing; otherwise it says what to install.
set -e
missing=""
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v make >/dev/null 2>&1 || missing="$missing make"
have_blas=no
for f in /usr/include/*/openblas-openmp/cblas.h /usr/include/openblas-openmp/cblas.h; do
  [ -f "$f" ] && have_blas=yes
done
[ "$have_blas" = yes ] || missing="$missing libopenblas-openmp-dev"

[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "install-deps: missing$missing; install them (e.g. sudo apt-get install$missing)" >&2
  exit 1
fi
