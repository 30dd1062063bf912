# The layers of splitlm's libraries (README "Layout"): a library may link
# libraries of its own layer or below, never above. Executables sit on top;
# only the `splitlm` tool and the tests may use `sim`.
#   0: transport, partition   1: scheduler   2: device, cloud   3: sim
set(SPLITLM_LIBRARIES transport partition scheduler device cloud sim)
set(SPLITLM_LAYER_transport 0)
set(SPLITLM_LAYER_partition 0)
set(SPLITLM_LAYER_scheduler 1)
set(SPLITLM_LAYER_device 2)
set(SPLITLM_LAYER_cloud 2)
set(SPLITLM_LAYER_sim 3)
set(SPLITLM_EXECUTABLES splitlm splitlm-device splitlm-cloud)
set(SPLITLM_SIM_USERS splitlm)

# Writes "FROM TO" lines (short names: transport, ..., or an executable's
# name) for every splitlm library each library and executable links
# directly, as given to target_link_libraries (PUBLIC and PRIVATE alike), to
# `file`; the check (cmake/CheckDependencies.cmake) reads them.
function(splitlm_write_link_edges file)
  set(lines "")
  foreach(from IN LISTS SPLITLM_LIBRARIES SPLITLM_EXECUTABLES)
    if(TARGET splitlm_${from})
      set(target splitlm_${from})
    else()
      set(target ${from})
    endif()
    get_target_property(links ${target} LINK_LIBRARIES)
    if(NOT links)
      continue()
    endif()
    foreach(link IN LISTS links)
      # (One MATCHES per if: a failed one clears CMAKE_MATCH_1.)
      string(REGEX REPLACE "^splitlm(::|_)" "" to "${link}")
      list(FIND SPLITLM_LIBRARIES "${to}" known)
      if(NOT to STREQUAL link AND known GREATER -1)
        string(APPEND lines "${from} ${to}\n")
      endif()
    endforeach()
  endforeach()
  file(WRITE "${file}" "${lines}")
endfunction()
