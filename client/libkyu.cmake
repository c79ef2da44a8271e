# libkyu.cmake (included by client/CMakeLists.txt once kyu_client is defined): the installed
# libkyu. kyu_client, the static library (libkyu.a, not installed), keeps every internal
# symbol for the CLI, kyu-bench and the tests; kyu_shared, built from the same sources with
# the same dependencies, is the installed shared library libkyu.so.0, which exports only the
# public API under the version node LIBKYU_0 (client/README.md "Installing libkyu").
include(GNUInstallDirs)

# The public headers: kyu.h and the proto/ headers it includes, installed under include/kyu/
# without their sections between "@kyu-internal-begin" and "@kyu-internal-end" (the codec,
# which needs msgpack-c's headers, and KYU_ASSERT). The functions the installed headers
# declare are libkyu's API: exactly those are exported (libkyu.map, made here), and
# tests/install checks both. Configure runs again when one of them changes.
set(KYU_PUBLIC_HEADERS ${CMAKE_CURRENT_SOURCE_DIR}/kyu.h ${PROJECT_SOURCE_DIR}/proto/kyu_err.h
    ${PROJECT_SOURCE_DIR}/proto/protocol.h)
set(KYU_PUBLIC_INCLUDE ${CMAKE_CURRENT_BINARY_DIR}/include)
set(kyu_api_symbols "")
foreach(h ${KYU_PUBLIC_HEADERS})
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${h})
    file(READ ${h} text)
    # Cut the internal sections (each from its begin marker to the end of its end marker's line).
    foreach(guard RANGE 100)
        string(FIND "${text}" "/* @kyu-internal-begin" b)
        if(b EQUAL -1)
            break()
        endif()
        string(FIND "${text}" "/* @kyu-internal-end */\n" e)
        if(e LESS b)
            message(FATAL_ERROR "${h}: @kyu-internal-begin without a matching @kyu-internal-end")
        endif()
        math(EXPR e "${e} + 24")
        string(SUBSTRING "${text}" 0 ${b} head)
        string(SUBSTRING "${text}" ${e} -1 tail)
        set(text "${head}${tail}")
    endforeach()
    if(text MATCHES "@kyu-internal")
        message(FATAL_ERROR "${h}: unmatched @kyu-internal marker")
    endif()
    get_filename_component(name ${h} NAME)
    file(WRITE ${KYU_PUBLIC_INCLUDE}/kyu/${name}.tmp "${text}")
    configure_file(${KYU_PUBLIC_INCLUDE}/kyu/${name}.tmp ${KYU_PUBLIC_INCLUDE}/kyu/${name} COPYONLY)
    # Its function declarations: a lowercase kyu_ name followed by "(" outside comments and
    # typedefs (a function type, "typedef bool kyu_x_fn(...);", is no symbol).
    string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" code "${text}")
    string(REGEX REPLACE "typedef[^;{]*;" "" code "${code}")
    string(REGEX MATCHALL "kyu_[a-z0-9_]+\\(" calls "${code}")
    foreach(c ${calls})
        string(REPLACE "(" "" c "${c}")
        list(APPEND kyu_api_symbols ${c})
    endforeach()
endforeach()
list(REMOVE_DUPLICATES kyu_api_symbols)
list(SORT kyu_api_symbols)
list(JOIN kyu_api_symbols ";\n        " kyu_api_list)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/libkyu.map.tmp
     "/* Made by client/libkyu.cmake from the installed headers: libkyu's exported API. */\n"
     "LIBKYU_0 {\n    global:\n        ${kyu_api_list};\n    local:\n        *;\n};\n")
configure_file(${CMAKE_CURRENT_BINARY_DIR}/libkyu.map.tmp ${CMAKE_CURRENT_BINARY_DIR}/libkyu.map
               COPYONLY)

get_target_property(kyu_client_sources kyu_client SOURCES)
get_target_property(kyu_client_libs kyu_client LINK_LIBRARIES)
add_library(kyu_shared SHARED ${kyu_client_sources})
set_target_properties(kyu_shared PROPERTIES
    OUTPUT_NAME kyu VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
    LINK_DEPENDS ${CMAKE_CURRENT_BINARY_DIR}/libkyu.map)
target_include_directories(kyu_shared PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
# All of proto/ (its public helpers too, not only what the client calls), then what
# kyu_client links.
target_link_libraries(kyu_shared PRIVATE -Wl,--whole-archive kyu_proto -Wl,--no-whole-archive
                      ${kyu_client_libs})
target_link_options(kyu_shared PRIVATE -Wl,--version-script=${CMAKE_CURRENT_BINARY_DIR}/libkyu.map)
if(NOT KYU_SANITIZE AND NOT KYU_FUZZ)
    # The library names every library it needs (instrumented builds leave their runtime's
    # symbols to the program).
    target_link_options(kyu_shared PRIVATE -Wl,--no-undefined)
endif()

install(TARGETS kyu_shared LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(h ${KYU_PUBLIC_HEADERS})
    get_filename_component(name ${h} NAME)
    install(FILES ${KYU_PUBLIC_INCLUDE}/kyu/${name} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/kyu)
endforeach()
# libkyu.pc: made here with the prefix left as @KYU_PC_PREFIX@, filled in at install time with
# the prefix given then (cmake --install --prefix).
foreach(d LIBDIR INCLUDEDIR)
    if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
        set(KYU_PC_${d} "${CMAKE_INSTALL_${d}}")
    else()
        set(KYU_PC_${d} "\${prefix}/${CMAKE_INSTALL_${d}}")
    endif()
endforeach()
# Requires.private and Libs.private: what libkyu links, from kyu_client's link libraries (an
# in-tree library such as kyu_proto is linked in: its own dependencies count instead).
set(kyu_pc_requires "")
set(kyu_pc_libs "")
set(kyu_pc_todo ${kyu_client_libs})
set(kyu_pc_seen "")
while(kyu_pc_todo)
    list(POP_FRONT kyu_pc_todo l)
    if(l MATCHES "^\\$<LINK_ONLY:(.+)>$")
        set(l "${CMAKE_MATCH_1}")
    endif()
    if(l IN_LIST kyu_pc_seen)
        continue()
    endif()
    list(APPEND kyu_pc_seen ${l})
    if(l MATCHES "^PkgConfig::(.+)$")
        if(NOT ${CMAKE_MATCH_1}_MODULE_NAME)
            message(WARNING "libkyu.pc: no pkg-config module known for ${l}")
        endif()
        list(APPEND kyu_pc_requires ${${CMAKE_MATCH_1}_MODULE_NAME})
    elseif(l STREQUAL "Threads::Threads")
        list(APPEND kyu_pc_libs -pthread)
    elseif(TARGET ${l})
        get_target_property(imported ${l} IMPORTED)
        if(imported)
            message(WARNING "libkyu.pc: cannot name ${l} in Requires.private or Libs.private")
        endif()
        get_target_property(deps ${l} INTERFACE_LINK_LIBRARIES)
        if(deps)
            list(APPEND kyu_pc_todo ${deps})
        endif()
    elseif(l MATCHES "^[A-Za-z0-9_.+-]+$")
        list(APPEND kyu_pc_libs -l${l})
    else()
        message(WARNING "libkyu.pc: cannot name ${l} in Libs.private")
    endif()
endwhile()
list(JOIN kyu_pc_requires " " KYU_PC_REQUIRES_PRIVATE)
list(JOIN kyu_pc_libs " " KYU_PC_LIBS_PRIVATE)
set(KYU_PC_VERSION ${PROJECT_VERSION})
set(KYU_PC_PREFIX "@KYU_PC_PREFIX@")
configure_file(libkyu.pc.in ${CMAKE_CURRENT_BINARY_DIR}/libkyu.pc.in @ONLY)
install(CODE "
    set(KYU_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
    configure_file(\"${CMAKE_CURRENT_BINARY_DIR}/libkyu.pc.in\"
                   \"${CMAKE_CURRENT_BINARY_DIR}/libkyu.pc\" @ONLY)")
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/libkyu.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
