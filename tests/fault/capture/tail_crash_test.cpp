// Crash test of the file tail: a writer appends numbered lines to app.log while the test rotates
// it (rename + create, copytruncate) and kills the tailing child (tail_crash_child) with SIGKILL
// at random moments, restarting it each time. At the end every line written must be in the ring
// exactly once, in order within its file generation, at its exact file offset.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cistern/buffer/ring.h"
#include "cistern/core/record.h"
#include "cistern/core/record_meta.h"
#include "subprocess.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using cistern::buffer::FrameId;
using cistern::buffer::LmdbRing;
using cistern::testing::Child;
using cistern::testing::TempDir;

namespace {

// Appends "<generation> <seq>\n" lines to app.log. A generation is one file's content from its
// start: a new one begins with every rotation (the new file after a rename, the file again from
// offset 0 after a copytruncate). Everything runs under `mu`, which rotations also take.
class Writer {
 public:
  Writer(std::filesystem::path log, std::uint32_t seed) : log_(std::move(log)), rng_(seed) {
    reopen();
  }
  ~Writer() {
    if (fd_ >= 0) ::close(fd_);
  }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  std::mutex mu;

  // Caller holds mu. Like a buffered logger, most writes end inside a line, whose rest comes
  // with the next write: the tail often holds an incomplete line when it is killed.
  void writeLines(std::size_t n) {
    if (n == 0) return;
    std::size_t last = 0;
    for (std::size_t i = 0; i < n; ++i) {
      last = held_.size();
      held_ += std::to_string(gen_) + " " + std::to_string(written_[gen_]++) + "\n";
    }
    const std::size_t keep = rng_() % (held_.size() - last);
    writeOut(held_.size() - keep);
  }

  // Caller holds mu. Writes the rest of the last line.
  void finishLine() { writeOut(held_.size()); }

  // Caller holds mu. logrotate's default: rename, the application still writes a little to its
  // old descriptor, then reopens the name.
  void renameRotate(const std::filesystem::path& to, std::size_t late_lines) {
    std::filesystem::rename(log_, to);
    writeLines(late_lines);
    finishLine();
    ::close(fd_);
    ++gen_;
    reopen();
  }

  // Caller holds mu: the writer is paused from the copy to the truncation, the window in which
  // any tailer loses what is written (the inherent copytruncate race), so that exactness can be
  // asserted. The caller also waited until the tail had stored the whole file: what it had not
  // read yet exists only in the copy, which the glob does not match.
  void copyTruncate(const std::filesystem::path& copy) {
    REQUIRE(held_.empty());
    std::filesystem::copy_file(log_, copy);
    REQUIRE(::ftruncate(fd_, 0) == 0);
    ++gen_;
    written_.push_back(0);
  }

  [[nodiscard]] std::uint64_t generation() const { return gen_; }
  [[nodiscard]] const std::vector<std::uint64_t>& written() const { return written_; }

 private:
  void reopen() {
    fd_ = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    REQUIRE(fd_ >= 0);
    if (written_.size() <= gen_) written_.push_back(0);
  }

  void writeOut(std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t w = ::write(fd_, held_.data() + done, n - done);
      if (w <= 0) std::abort();  // also runs on the writer thread, where REQUIRE may not
      done += static_cast<std::size_t>(w);
    }
    held_.erase(0, n);
  }

  std::filesystem::path log_;
  std::mt19937 rng_;
  std::string held_;  // the part of the last line not written yet
  int fd_ = -1;
  std::uint64_t gen_ = 0;
  std::vector<std::uint64_t> written_;
};

struct StoredLine {
  std::uint64_t seq = 0;
  std::uint64_t offset = 0;
  std::uint8_t flags = 0;
  std::size_t length = 0;
};

// Reads the ring as the child commits, per generation.
class Tracker {
 public:
  explicit Tracker(const LmdbRing& ring) : ring_(ring) {}

  void poll() {
    cistern::buffer::ReadBatch batch;
    for (;;) {
      FrameId next = 0;
      auto n = ring_.scan(from_, batch, {}, &next);
      REQUIRE(n);
      if (*n == 0) return;
      for (const auto& f : batch.frames()) {
        cistern::RecordReader reader(f.body);
        while (const auto* r = reader.next()) take(*r);
        REQUIRE_FALSE(reader.failed());
      }
      from_ = next;
    }
  }

  [[nodiscard]] std::uint64_t count(std::uint64_t gen) const {
    auto it = lines_.find(gen);
    return it == lines_.end() ? 0 : it->second.size();
  }
  [[nodiscard]] const std::map<std::uint64_t, std::vector<StoredLine>>& lines() const {
    return lines_;
  }
  [[nodiscard]] std::uint64_t total() const { return total_; }

 private:
  void take(const cistern::RecordView& r) {
    REQUIRE(r.kind == cistern::RecordKind::kLogLine);
    REQUIRE(r.input == "app");
    auto meta = cistern::decodeLogLineMeta(r.meta);
    REQUIRE(meta);
    const std::string text(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
    std::uint64_t gen = 0;
    std::uint64_t seq = 0;
    const char* end = text.data() + text.size();
    auto g = std::from_chars(text.data(), end, gen);
    INFO("line '" << text << "' at " << meta->offset << " in " << meta->path);
    REQUIRE((g.ec == std::errc() && g.ptr != end && *g.ptr == ' '));
    auto s = std::from_chars(g.ptr + 1, end, seq);
    REQUIRE((s.ec == std::errc() && s.ptr == end));
    lines_[gen].push_back(StoredLine{seq, meta->offset, meta->flags, text.size()});
    ++total_;
  }

  const LmdbRing& ring_;
  FrameId from_ = 0;
  std::map<std::uint64_t, std::vector<StoredLine>> lines_;
  std::uint64_t total_ = 0;
};

enum class Action { kKill, kRename, kCopyTruncate };

}  // namespace

TEST_CASE("killed at random moments while its files rotate, the tail stores every line once",
          "[fault]") {
  TempDir dir("cistern-tailcrash");
  const auto logs = dir / "logs";
  std::filesystem::create_directory(logs);
  const auto ring_dir = dir / "ring";
  const std::vector<std::string> argv{cistern::testing::binary("tests/tail_crash_child"),
                                      ring_dir.string(), (logs / "app.log*").string()};
  const unsigned catch_seed = Catch::rngSeed();
  std::mt19937_64 rng(catch_seed != 0 ? catch_seed : std::random_device{}());

  auto startChild = [&] {
    auto c = std::make_unique<Child>(argv);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (c->out().find("started") == std::string::npos) {
      INFO("child stderr: " << c->err());
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      REQUIRE(c->pump(10ms));
    }
    return c;
  };
  auto child = startChild();
  cistern::buffer::RingOptions ro;
  ro.dir = ring_dir;
  ro.read_only = true;
  auto ring = LmdbRing::open(ro);
  REQUIRE(ring);
  Tracker tracker(**ring);

  Writer writer(logs / "app.log", static_cast<std::uint32_t>(rng()));
  std::atomic<bool> stop_writing{false};
  std::thread writing([&, seed = static_cast<std::uint32_t>(rng())] {
    std::mt19937 wrng(seed);
    while (!stop_writing.load()) {
      {
        std::lock_guard lk(writer.mu);
        writer.writeLines(1 + wrng() % 16);
      }
      std::this_thread::sleep_for(500us);
    }
  });

  // A failed REQUIRE unwinds through here: the writer must not be left running.
  struct JoinWriter {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~JoinWriter() {
      stop.store(true);
      if (thread.joinable()) thread.join();
    }
  } join_writer{stop_writing, writing};

  // Pumps the child's pipes while waiting, so its logging never blocks it.
  auto pause = [&](std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) child->pump(5ms);
  };

  std::vector<Action> actions;
  actions.insert(actions.end(), 14, Action::kKill);
  actions.insert(actions.end(), 5, Action::kRename);
  actions.insert(actions.end(), 4, Action::kCopyTruncate);
  std::shuffle(actions.begin(), actions.end(), rng);
  int kills = 0;
  int renames = 0;
  int copytruncates = 0;
  const auto started = std::chrono::steady_clock::now();
  for (const Action action : actions) {
    // Often right after the previous action (a kill just after a rotation is the hard case).
    pause(std::chrono::milliseconds(rng() % 10 < 3 ? rng() % 50 : 100 + rng() % 900));
    switch (action) {
      case Action::kKill: {
        child->kill(SIGKILL);
        INFO("child stderr: " << child->err());
        REQUIRE(child->wait() == 128 + SIGKILL);
        ++kills;
        child = startChild();
        break;
      }
      case Action::kRename: {
        std::lock_guard lk(writer.mu);
        // A name the glob matches, so a child killed before finishing the old file resumes it.
        writer.renameRotate(logs / ("app.log." + std::to_string(++renames)), rng() % 5);
        break;
      }
      case Action::kCopyTruncate: {
        std::lock_guard lk(writer.mu);
        writer.finishLine();
        const auto gen = writer.generation();
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        for (;;) {
          tracker.poll();
          if (tracker.count(gen) >= writer.written()[gen]) break;
          INFO("generation " << gen << ": " << tracker.count(gen) << " of " << writer.written()[gen]
                             << " lines stored; child: " << child->err());
          REQUIRE(std::chrono::steady_clock::now() < deadline);
          child->pump(5ms);
        }
        writer.copyTruncate(logs / ("copy-" + std::to_string(++copytruncates)));
        break;
      }
    }
  }
  stop_writing.store(true);
  writing.join();
  writer.finishLine();
  const auto written = writer.written();
  std::uint64_t total_written = 0;
  for (auto n : written) total_written += n;

  // Let the last child catch up, then stop it cleanly.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    tracker.poll();
    if (tracker.total() >= total_written) break;
    INFO(tracker.total() << " of " << total_written << " lines stored; child: " << child->err());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    child->pump(20ms);
  }
  child->kill(SIGTERM);
  while (child->pump(100ms)) {
  }
  INFO("child stderr: " << child->err());
  REQUIRE(child->wait() == 0);
  CHECK(child->out().find("stopped") != std::string::npos);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  // Everything again from the first frame, with nothing the child might still have added.
  Tracker stored(**ring);
  stored.poll();
  CHECK(stored.total() == total_written);
  for (std::uint64_t gen = 0; gen < written.size(); ++gen) {
    INFO("generation " << gen);
    const auto it = stored.lines().find(gen);
    const std::vector<StoredLine> none;
    const auto& lines = it == stored.lines().end() ? none : it->second;
    REQUIRE(lines.size() == written[gen]);
    std::uint64_t offset = 0;
    for (std::uint64_t i = 0; i < lines.size(); ++i) {
      INFO("line " << i);
      REQUIRE(lines[i].seq == i);
      REQUIRE(lines[i].offset == offset);
      REQUIRE(lines[i].flags == 0);
      offset += lines[i].length + 1;
    }
  }
  CHECK(kills >= 10);
  std::printf(
      "tail crash: %d kills, %d renames, %d copytruncates, %zu generations, %llu lines, "
      "%.1fs\n",
      kills, renames, copytruncates, written.size(), static_cast<unsigned long long>(total_written),
      seconds);
}
