#include "cistern/platform/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace cistern::platform {
namespace {

tl::unexpected<Error> ioError(const std::filesystem::path& file, const char* what, int err) {
  return fail(ErrorCode::kIo, fmt::format("{} {}: {}", what, file.string(), std::strerror(err)));
}

bool writeAll(int fd, std::string_view content) {
  while (!content.empty()) {
    const ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    content.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

Status writeFileAtomically(const std::filesystem::path& file, std::string_view content) {
  std::error_code ec;
  const auto dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  std::filesystem::create_directories(dir, ec);
  if (ec) return ioError(dir, "creating", ec.value());
  const std::filesystem::path tmp = file.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ioError(tmp, "writing", errno);
  const bool written = writeAll(fd, content) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!written) {
    ::unlink(tmp.c_str());
    return ioError(file, "writing", err);
  }
  if (std::rename(tmp.c_str(), file.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(tmp.c_str());
    return ioError(file, "writing", rename_err);
  }
  // The rename itself is durable only once the directory is synced.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return ok();
}

Result<std::string> readSmallFile(const std::filesystem::path& file, std::size_t max_bytes) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return fail(ErrorCode::kNotFound, fmt::format("{} does not exist", file.string()));
    }
    return ioError(file, "reading", err);
  }
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ioError(file, "reading", err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      return fail(ErrorCode::kIo,
                  fmt::format("{} is larger than {} bytes", file.string(), max_bytes));
    }
  }
  ::close(fd);
  return out;
}

}  // namespace cistern::platform
