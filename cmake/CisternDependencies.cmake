# Third-party dependencies, all from Debian 12 packages (scripts/bootstrap.sh installs them).

find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(tl-expected REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(zstd REQUIRED)

pkg_check_modules(LMDB REQUIRED IMPORTED_TARGET lmdb)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)

if(CISTERN_BUILD_TESTS)
  find_package(Catch2 2 REQUIRED)
endif()

# Capture: libpcap, libuv (the log inputs' loops) and mbedTLS (syslog over TLS). Debian's mbedTLS
# 2.28 ships no pkg-config file, so it is found by its headers and libraries.
pkg_check_modules(PCAP REQUIRED IMPORTED_TARGET libpcap)
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)
find_path(MBEDTLS_INCLUDE_DIR mbedtls/ssl.h REQUIRED)
find_library(MBEDTLS_LIBRARY mbedtls REQUIRED)
find_library(MBEDX509_LIBRARY mbedx509 REQUIRED)
find_library(MBEDCRYPTO_LIBRARY mbedcrypto REQUIRED)
add_library(cistern_mbedtls INTERFACE)
target_include_directories(cistern_mbedtls SYSTEM INTERFACE ${MBEDTLS_INCLUDE_DIR})
target_link_libraries(cistern_mbedtls INTERFACE ${MBEDTLS_LIBRARY} ${MBEDX509_LIBRARY}
                      ${MBEDCRYPTO_LIBRARY})
add_library(MbedTLS::mbedtls ALIAS cistern_mbedtls)

# Transport: libcurl (HTTP outputs, the multi interface driven by libuv), zlib (gzip request
# bodies) and protobuf (the OTLP and OpAMP messages, compiled from our own .proto subsets).
find_package(CURL REQUIRED)
find_package(ZLIB REQUIRED)
find_package(Protobuf REQUIRED)

# Agent: the local status API is served by libmicrohttpd.
pkg_check_modules(MICROHTTPD REQUIRED IMPORTED_TARGET libmicrohttpd)
