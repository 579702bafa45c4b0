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
