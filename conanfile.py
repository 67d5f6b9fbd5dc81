"""Conan 2 recipe for gorego, a C++20 Remote Execution API v2 remote cache server.

Consumers: find_package(gorego) and link gorego::core (header-only: Status, Result, Digest) or
gorego::reapi (generated protocol code, proto conversion, gRPC services). The target names match the ones the
CMake install exports, so a consumer builds the same against either.
"""

import os

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, rmdir

required_conan_version = ">=2.1"  # "<host_version>"; components check skipping visible=False


class GoregoConan(ConanFile):
    name = "gorego"
    version = "0.1.0"
    license = "Apache-2.0"
    description = "A C++20 Remote Execution API v2 remote cache server (CAS and action cache)"
    topics = ("reapi", "remote-cache", "bazel", "grpc", "cas")
    package_type = "static-library"

    settings = "os", "arch", "compiler", "build_type"
    options = {"fPIC": [True, False]}
    default_options = {"fPIC": True}

    exports_sources = (
        "CMakeLists.txt",
        "include/*",
        "src/*",
        "proto/*",
        "apps/*",
        "cmake/*",
    )

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # Public: the exported components' headers include these.
        self.requires("fmt/9.1.0", transitive_headers=True)
        self.requires("openssl/[>=3 <4]", transitive_headers=True)
        self.requires("grpc/1.54.3", transitive_headers=True)
        self.requires("protobuf/3.21.12", transitive_headers=True)
        self.requires("zstd/[>=1.5 <2]", transitive_headers=True)
        # Private: used by the gorego server and its internal libraries only, so not part of
        # any exported component (visible=False keeps Conan's component check and consumers'
        # graphs free of them).
        self.requires("yaml-cpp/[>=0.7 <0.9]", visible=False)
        self.requires("cli11/[>=2.1 <3]", visible=False)

    def build_requirements(self):
        # protoc and grpc_cpp_plugin run on the build machine; same versions as the host libs.
        self.tool_requires("protobuf/<host_version>")
        self.tool_requires("grpc/<host_version>")

    def validate(self):
        check_min_cppstd(self, 20)

    def generate(self):
        toolchain = CMakeToolchain(self)
        # The package is the libraries and the server; the test suite (which drives real
        # Bazel and BuildStream peers) and the benchmarks are not exported sources.
        toolchain.cache_variables["GOREGO_BUILD_TESTS"] = False
        toolchain.cache_variables["GOREGO_BUILD_BENCHMARKS"] = False
        toolchain.cache_variables["GOREGO_BUILD_APP"] = True
        toolchain.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()
        # The test suite drives real peers (Bazel, BuildStream); run it with ctest, not here.

    def package(self):
        cmake = CMake(self)
        cmake.install()
        # Consumers get Conan's generated gorego-config.cmake (from package_info) instead.
        # share/gorego/proto (remote_execution.proto for clients) stays.
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "gorego")
        self.cpp_info.set_property("cmake_target_name", "gorego::gorego")

        # Mirrors the CMake export (CMakeLists.txt, goregoTargets): gorego_core INTERFACE over
        # gorego_blake3 STATIC, and gorego_reapi STATIC, with the generated *.pb.h under include/gorego/proto.
        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "gorego::core")
        core.bindirs = []
        # gorego_blake3: the BLAKE3 C implementation (built from GOREGO_BLAKE3_DIR).
        core.libs = ["gorego_blake3"]
        core.includedirs = ["include", os.path.join("include", "gorego", "blake3")]
        core.requires = ["fmt::fmt", "openssl::crypto", "zstd::zstd"]
        if self.settings.os in ("Linux", "FreeBSD"):
            core.system_libs = ["pthread"]

        reapi = self.cpp_info.components["reapi"]
        reapi.set_property("cmake_target_name", "gorego::reapi")
        reapi.libs = ["gorego_reapi"]
        reapi.includedirs = ["include", os.path.join("include", "gorego", "proto")]
        reapi.requires = ["core", "grpc::grpc++", "protobuf::libprotobuf"]
