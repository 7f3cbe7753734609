# The layer graph of DESIGN.md §2, written once. SOLO_LAYER_DEPS_<layer> lists the layers that
# src/solo/<layer>/ (subfolders included: backend/cpu is backend, comm/nccl is comm) may
# include and its CMake targets may link. solo_layer() refuses a link outside it when CMake
# configures; the layering test (tests/check_layering.cmake) refuses an #include outside it.
# A new layer is one line here, plus its name in the lines of the layers that use it.
set(SOLO_LAYERS core ir autograd layout planner backend comm runtime compile tensor nn optim io
                data models cluster session)
set(SOLO_LAYER_DEPS_core "")
set(SOLO_LAYER_DEPS_ir core)
set(SOLO_LAYER_DEPS_autograd core ir)
set(SOLO_LAYER_DEPS_layout core ir)
set(SOLO_LAYER_DEPS_planner core ir layout)
set(SOLO_LAYER_DEPS_backend core)
set(SOLO_LAYER_DEPS_comm core)
set(SOLO_LAYER_DEPS_runtime core ir backend comm)
set(SOLO_LAYER_DEPS_compile core ir autograd layout planner runtime)
set(SOLO_LAYER_DEPS_tensor core ir autograd layout backend comm compile planner runtime)
set(SOLO_LAYER_DEPS_nn core ir tensor)
set(SOLO_LAYER_DEPS_optim core ir tensor)
set(SOLO_LAYER_DEPS_io core)
set(SOLO_LAYER_DEPS_data core)
set(SOLO_LAYER_DEPS_models core ir tensor nn io)
set(SOLO_LAYER_DEPS_cluster core)
set(SOLO_LAYER_DEPS_session core ir cluster comm tensor)

# A typo in a list would silently allow nothing (or break the check): every named layer exists.
foreach(layer ${SOLO_LAYERS})
  if(NOT DEFINED SOLO_LAYER_DEPS_${layer})
    message(FATAL_ERROR "solo_layers.cmake: layer '${layer}' has no SOLO_LAYER_DEPS_${layer}")
  endif()
  foreach(dep ${SOLO_LAYER_DEPS_${layer}})
    if(NOT dep IN_LIST SOLO_LAYERS)
      message(FATAL_ERROR "solo_layers.cmake: layer '${layer}' uses unknown layer '${dep}'")
    endif()
  endforeach()
endforeach()
