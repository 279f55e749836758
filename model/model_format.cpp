#include "model/model_format.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "common/error.hpp"
#include "model/gguf.hpp"
#include "model/pack_format.hpp"

namespace sluice {

ModelFormat detect_model_format(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw Exception(ErrorContext{ErrorKind::io, path, {}, -1, -1, err}, fmt::format("cannot open {}: {}", path, std::strerror(err)));
  }
  char magic[sizeof(pack::kMagic)] = {};
  ssize_t got;
  do {
    got = ::pread(fd, magic, sizeof(magic), 0);
  } while (got < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (got < 0) {
    throw Exception(ErrorContext{ErrorKind::io, path, {}, -1, 0, err}, fmt::format("cannot read {}: {}", path, std::strerror(err)));
  }
  const std::uint32_t gguf_magic = gguf::kMagic;
  if (got >= 4 && std::memcmp(magic, &gguf_magic, 4) == 0) return ModelFormat::gguf;
  if (got == ssize_t(sizeof(magic)) && std::memcmp(magic, pack::kMagic, sizeof(magic)) == 0) return ModelFormat::pack;
  throw Exception(ErrorContext{ErrorKind::corrupt, path, {}, -1, 0},
                  fmt::format("{}: neither a GGUF file nor a sluice pack (magic bytes do not match)", path));
}

}  // namespace sluice
