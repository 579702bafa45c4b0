# Compiler settings shared by every Cistern target.

set(CISTERN_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual
    -Wimplicit-fallthrough -Wformat=2)
if(CISTERN_WERROR)
  list(APPEND CISTERN_WARNINGS -Werror)
endif()

set(CISTERN_SANITIZER_FLAGS "")
if(CISTERN_SANITIZE)
  set(CISTERN_SANITIZER_FLAGS -fsanitize=${CISTERN_SANITIZE} -fno-omit-frame-pointer
      -fno-sanitize-recover=all)
  # GCC 12's flow analysis under sanitizer instrumentation reports uninitialized reads inside
  # libstdc++ (std::regex, std::function) that do not exist; the release build keeps the warning.
  list(APPEND CISTERN_WARNINGS -Wno-maybe-uninitialized)
endif()

# cistern_target_defaults(<target>): warnings, sanitizers and the project's include layout.
function(cistern_target_defaults target)
  target_compile_options(${target} PRIVATE ${CISTERN_WARNINGS} ${CISTERN_SANITIZER_FLAGS})
  target_link_options(${target} PRIVATE ${CISTERN_SANITIZER_FLAGS})
endfunction()

# cistern_module(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Declares the static library cistern_<name> with public headers in <name>/include and
# sources in <name>/src. Third-party libraries belong in PRIVATE_DEPS.
function(cistern_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(cistern_${name} STATIC ${ARG_SOURCES})
  add_library(cistern::${name} ALIAS cistern_${name})
  target_include_directories(cistern_${name}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(cistern_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  cistern_target_defaults(cistern_${name})
endfunction()
