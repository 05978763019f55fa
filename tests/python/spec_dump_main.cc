// spec_dump: the C++ spec loader (client/spec_loader.h) as a command, for the
// Python client's cross-check (python/tests/test_spec.py): `spec_dump FILE`
// writes the SweepSpec that `sweepctl submit FILE` would send, serialized
// (deterministically), to stdout; on an error it writes the loader's message to
// stderr and exits 1.
#include <cstdio>
#include <iostream>
#include <string>

#include "client/spec_loader.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: spec_dump SPEC_FILE\n";
    return 2;
  }
  auto spec = sweepd::LoadSweepSpecFile(argv[1]);
  if (!spec.ok()) {
    std::cerr << spec.status().message() << "\n";
    return 1;
  }
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    spec->SerializeToCodedStream(&out);
  }
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  return 0;
}
