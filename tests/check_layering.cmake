# Checks every #include "solo/<layer>/..." under src/solo against the layer graph of
# cmake/solo_layers.cmake (DESIGN.md §2; the layers' CMake targets are checked against the same
# graph): a layer includes only itself and the layers it lists. Run by CTest:
# cmake -DSOLO_SRC=<src dir> -DSOLO_LAYER_GRAPH=<cmake/solo_layers.cmake> -P check_layering.cmake
# A subfolder belongs to its layer (backend/cpu is backend, comm/nccl is comm).
cmake_minimum_required(VERSION 3.22)  # IN_LIST and the project's other policies
if(NOT SOLO_LAYER_GRAPH)
  message(FATAL_ERROR "pass -DSOLO_LAYER_GRAPH=<cmake/solo_layers.cmake>")
endif()
include(${SOLO_LAYER_GRAPH})

if(NOT SOLO_SRC)
  message(FATAL_ERROR "pass -DSOLO_SRC=<the src directory>")
endif()
file(GLOB_RECURSE sources "${SOLO_SRC}/solo/*.h" "${SOLO_SRC}/solo/*.cc" "${SOLO_SRC}/solo/*.cu"
     "${SOLO_SRC}/solo/*.cuh")
set(violations 0)
set(checked 0)
foreach(file ${sources})
  file(RELATIVE_PATH rel "${SOLO_SRC}/solo" "${file}")
  string(REGEX MATCH "^[a-z_]+" layer "${rel}")
  if(NOT layer IN_LIST SOLO_LAYERS)
    message(SEND_ERROR "${rel}: layer '${layer}' is not in the layer graph (${SOLO_LAYER_GRAPH})")
    math(EXPR violations "${violations} + 1")
    continue()
  endif()
  file(STRINGS "${file}" includes REGEX "^[ \t]*#[ \t]*include[ \t]+\"solo/")
  foreach(line ${includes})
    string(REGEX REPLACE ".*\"solo/([a-z_]+)/.*" "\\1" target "${line}")
    math(EXPR checked "${checked} + 1")
    if(target STREQUAL layer)
      continue()
    endif()
    list(FIND SOLO_LAYER_DEPS_${layer} "${target}" found)
    if(found EQUAL -1)
      message(SEND_ERROR "${rel}: layer '${layer}' includes '${target}' (${line}); "
                         "allowed: ${SOLO_LAYER_DEPS_${layer}}")
      math(EXPR violations "${violations} + 1")
    endif()
  endforeach()
endforeach()
if(checked EQUAL 0)
  message(FATAL_ERROR "no #include \"solo/...\" found under ${SOLO_SRC}/solo: wrong directory?")
endif()
if(violations GREATER 0)
  message(FATAL_ERROR "${violations} include(s) break the layering")
endif()
message(STATUS "layering: ${checked} includes checked, none upward")
