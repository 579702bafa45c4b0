// tail_crash_child: tails a glob into an LmdbRing until it is killed or told to stop. Run by
// tests/fault/capture/tail_crash_test.cpp, which kills it with SIGKILL at random moments while
// the files rotate, restarts it, and checks the ring at the end.
//
//   tail_crash_child <ring dir> <glob>
//
// Prints "started" once the source runs. On SIGTERM it stops the source, closes the ring, prints
// "stopped <lines_read> <lines_stored>" and exits 0. Exit codes: 2 usage, 3 ring or source error.
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include <spdlog/spdlog.h>

#include "cistern/buffer/ring.h"
#include "cistern/capture/file_tail_source.h"

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "tail_crash_child: %s\n", why.c_str());
  std::_Exit(3);
}

// One line with write(2), so nothing sits in a stdio buffer when SIGKILL arrives.
void emit(const std::string& line) {
  const std::string text = line + "\n";
  if (::write(1, text.data(), text.size()) != static_cast<ssize_t>(text.size())) std::_Exit(3);
}

std::uint64_t counterOf(const cistern::capture::Source& s, const std::string& name) {
  for (const auto& c : s.counters()) {
    if (c.name == name) return c.value;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <ring dir> <glob>\n", argv[0]);
    return 2;
  }
  // Never outlive the test that runs us.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) return 2;
  spdlog::set_level(spdlog::level::warn);

  // Blocked before any thread starts, so every thread inherits the mask and sigwait() gets it.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  cistern::buffer::RingOptions ro;
  ro.dir = argv[1];
  ro.max_size = 256ULL << 20U;
  ro.sync = cistern::buffer::SyncMode::kBatch;
  ro.commit_interval = std::chrono::milliseconds(5);
  auto ring = cistern::buffer::LmdbRing::open(ro);
  if (!ring) die("open: " + ring.error().describe());

  cistern::capture::FileTailOptions o;
  o.name = "app";
  o.paths = {argv[2]};
  // Files created while the child was down have no saved offset; all of them must be read.
  o.start_at = cistern::capture::StartAt::kBeginning;
  o.poll_interval = std::chrono::milliseconds(10);
  auto source = cistern::capture::makeFileTailSource(o, **ring);
  if (!source) die("make: " + source.error().describe());
  if (auto st = (*source)->start(); !st) die("start: " + st.error().describe());
  emit("started");

  int sig = 0;
  sigwait(&stop_signals, &sig);
  (*source)->stop();
  if (auto st = (*ring)->close(); !st) die("close: " + st.error().describe());
  emit("stopped " + std::to_string(counterOf(**source, "lines_read")) + " " +
       std::to_string(counterOf(**source, "lines_stored")));
  return 0;
}
