#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking Cistern needs, then the
# npm test peers (scripts/peers.sh). Idempotent: packages already present are not reinstalled and
# apt is not touched at all when nothing is missing.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang-format clang-tidy
  # libraries (Debian 12 versions)
  liblmdb-dev libxxhash-dev libzstd-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libexpected-dev
  catch2
  libpcap-dev libuv1-dev libmbedtls-dev libcurl4-openssl-dev
  protobuf-compiler libprotobuf-dev zlib1g-dev libmicrohttpd-dev
  # tools the tests and benchmarks call
  lmdb-utils procps tcpdump wrk
  # capture tests: namespaces and veth pairs, packet replay, pcap decoding, damaged samples, test CAs
  iproute2 tcpreplay tshark pcapfix openssl
  # syslog output tests: rsyslogd as the receiver (imptcp, imtcp with OpenSSL, imrelp)
  rsyslog rsyslog-openssl rsyslog-relp
  # transport tests: HTTP, TLS and mutual-TLS peer (Debian 12's nginx has the ssl module)
  nginx
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# Node.js runs the npm test peers (tests/peers). Debian's is installed only when the machine has
# no node at all: developer and CI machines of this kind bring a newer node and npm of their own,
# which the Debian packages would conflict with.
if ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
if ((${#missing[@]} == 0)); then
  echo "bootstrap: all ${#packages[@]} packages present"
else
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The npm packages the tests run as peers (idempotent).
"$(dirname "$0")/peers.sh"
