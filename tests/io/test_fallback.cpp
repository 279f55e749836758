// Backend selection: automatic falls back to pread when io_uring is blocked (as under a
// container's seccomp policy), and O_DIRECT falls back to buffered reads on tmpfs.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <fcntl.h>
#include <linux/io_uring.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <cstddef>

#include "tests/io/io_fixture.hpp"

namespace sluice::io::testing {
namespace {

using sluice::testing::TempDir;
using sluice::testing::write_pattern_file;

// Installs a seccomp filter that makes io_uring_setup fail with EPERM, like Docker's default
// profile does. Only ever called in a forked child.
bool block_io_uring() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

void open_under_seccomp(const std::string& path) {
  if (!block_io_uring()) std::exit(3);
  auto reader = open_reader(path, BackendParam{BackendKind::automatic, true});
  if (std::string(reader->backend_name()) != "pread") std::exit(4);
  if (reader->fallback_note().find("io_uring unavailable") == std::string::npos) std::exit(5);
  PassResult pass = read_pass(*reader, 4096);
  if (!pass.errors.empty()) std::exit(6);
  for (std::uint64_t i = 0; i < pass.data.size(); ++i) {
    if (pass.data[i] != sluice::testing::pattern_byte(i, 9)) std::exit(7);
  }
  std::fprintf(stderr, "fell back: %s\n", reader->fallback_note().c_str());
  std::exit(0);
}

// Whether this process may create an io_uring at all: container runtimes' default seccomp
// profiles (Docker's since 2023) and kernel.io_uring_disabled refuse io_uring_setup.
std::string io_uring_refused_because() {
  io_uring_params params{};
  const long fd = ::syscall(__NR_io_uring_setup, 2, &params);
  if (fd >= 0) {
    ::close(int(fd));
    return {};
  }
  return std::strerror(errno);
}

TEST(BackendSelection, AutomaticPrefersIoUring) {
  if (const std::string why = io_uring_refused_because(); !why.empty()) {
    GTEST_SKIP() << "io_uring_setup is refused here (" << why << "): the pread fallback is covered by the seccomp test";
  }
  TempDir dir;
  std::string path = dir.file("x.bin");
  write_pattern_file(path, 4096, 1);
  auto reader = open_reader(path, BackendParam{BackendKind::automatic, true});
  EXPECT_STREQ(reader->backend_name(), "io_uring");
  EXPECT_TRUE(reader->fallback_note().empty()) << reader->fallback_note();
}

TEST(BackendSelectionDeathTest, FallsBackToPreadWhenIoUringIsBlocked) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir;
  std::string path = dir.file("x.bin");
  write_pattern_file(path, 3 * 4096 + 5, 9);
  EXPECT_EXIT(open_under_seccomp(path), ::testing::ExitedWithCode(0), "fell back: .*io_uring unavailable");
}

TEST(BackendSelection, ODirectFallsBackToBufferedOnTmpfs) {
  if (!std::filesystem::exists("/dev/shm")) GTEST_SKIP() << "no /dev/shm (tmpfs) on this machine";
  std::string path = "/dev/shm/sluice-test-odirect-" + std::to_string(::getpid());
  write_pattern_file(path, 10000, 4);
  int probe = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (probe >= 0) {
    ::close(probe);
    std::filesystem::remove(path);
    GTEST_SKIP() << "this kernel accepts O_DIRECT on tmpfs (Linux >= 6.6), so the buffered fallback cannot be reached here";
  }
  auto reader = open_reader(path, BackendParam{BackendKind::uring, true});
  bool direct = reader->direct();
  std::string note = reader->fallback_note();
  PassResult pass = read_pass(*reader, 4096);
  std::filesystem::remove(path);
  EXPECT_FALSE(direct);
  EXPECT_NE(note.find("O_DIRECT not supported"), std::string::npos) << note;
  ASSERT_TRUE(pass.errors.empty());
  EXPECT_TRUE(matches_pattern(pass.data, 4));
}

}  // namespace
}  // namespace sluice::io::testing
