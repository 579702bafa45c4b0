// FileTailSource: the file tail input (contract in cistern/capture/file_tail_source.h).
//
// One thread runs a libuv loop with a timer at poll_interval. Each tick re-evaluates the globs,
// matches what they find against the open files by device + inode, and reads what every open
// file gained. Reading is plain pread(2) on the loop thread: the loop belongs to this source
// alone and local files do not stall the way sockets do, so a thread pool would only add
// hand-offs. The appends block (Wait::kYes) when the sink is full: a file can wait, and nothing
// is lost while it does.
//
// Files stay open while a pattern matches them, which is what lets a rename rotation finish the
// old file through its descriptor. A file no pattern matches any more (renamed away, deleted) is
// read to its end and closed once it has not grown for the rotate wait.
//
// State: every append carries the file's state (file_tail_state.h) with the offset after its last
// record, and a file's state is also written alone when it is first seen, when it was truncated,
// and when it is closed, so a restart resumes exactly there. Entries of files that vanished
// while the agent was down are left in place (a few bytes each, overwritten if the inode comes
// back); deleted files read to their end are written as tombstones.
#include <fcntl.h>
#include <glob.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cistern/capture/file_tail_source.h"
#include "cistern/core/record_batch.h"
#include "cistern/core/record_meta.h"
#include "cistern/platform/clock.h"
#include "file_tail_lines.h"
#include "file_tail_state.h"
#include "input_error.h"

namespace cistern::capture {
namespace {

using namespace std::chrono_literals;
using tail::FileIdentity;
using tail::Fingerprint;
using tail::LineScanner;
using tail::SavedFile;
using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 256U << 10U;
// One append carries at most about this much (checked at line ends; a long line split into
// records of max_line_bytes may go beyond).
constexpr std::size_t kBatchLines = 4096;
constexpr std::size_t kBatchBytes = 1U << 20U;
// Bytes read from one file per tick, so a file written faster than it can be stored does not
// starve the others, and stop() is seen between chunks anyway.
constexpr std::uint64_t kTickBudget = 16U << 20U;
// Bounds accepted by makeFileTailSource (the config schema is narrower).
constexpr std::uint64_t kMaxLineBytesLimit = 16U << 20U;
constexpr std::uint64_t kMaxFingerprintBytes = 64U << 10U;
// A file no longer at its name is closed, and its incomplete last line emitted, once it has not
// grown for this long: the writer that still holds it open gets time to finish before it
// reopens (logrotate's postrotate signal), without keeping deleted files' space for long.
constexpr auto kMinRotateWait = 1s;

std::shared_ptr<spdlog::logger> captureLogger() {
  if (auto existing = spdlog::get("capture")) return existing;
  try {
    return spdlog::stderr_color_mt("capture");
  } catch (const spdlog::spdlog_ex&) {
    // Another input registered it between the two calls.
    return spdlog::get("capture");
  }
}

// Called by glob(3) for a directory it cannot read. ENOENT and ENOTDIR just mean nothing matches
// there; anything else makes the match incomplete, so files missing from it are not taken as gone.
thread_local int t_glob_errors = 0;
int onGlobError(const char* /*path*/, int err) {
  if (err != ENOENT && err != ENOTDIR) ++t_glob_errors;
  return 0;
}

std::string errnoText(int err) { return std::strerror(err); }

std::int64_t mtimeNs(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

FileIdentity identityOf(const struct stat& st) {
  return FileIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

// Reads the first `n` bytes of the file (fewer when it is shorter).
Result<std::string> readPrefix(int fd, std::uint64_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(ErrorCode::kIo, "read: " + errnoText(errno), true);
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

// The directory a pattern's matches live under, up to the first component with a glob
// metacharacter ("/var/log/app-*/x.log" -> "/var/log").
std::string fixedDirectory(const std::string& pattern) {
  const std::size_t meta = pattern.find_first_of("*?[");
  const std::string fixed = meta == std::string::npos ? pattern : pattern.substr(0, meta);
  const std::size_t slash = fixed.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return fixed.substr(0, slash);
}

// One file being tailed. Owned by the loop thread (by start() before the thread runs).
struct TailFile {
  TailFile(std::uint64_t max_line_bytes, LongLines mode) : scanner(max_line_bytes, mode) {}
  ~TailFile() {
    if (fd >= 0) ::close(fd);
  }
  TailFile(const TailFile&) = delete;
  TailFile& operator=(const TailFile&) = delete;

  FileIdentity id;
  std::string path;  // its name now (changes when a rotation renames it within the patterns)
  std::string key;   // state key
  int fd = -1;
  Fingerprint fp;
  LineScanner scanner;
  std::uint64_t order = 0;  // discovery order: older files are read first in a tick
  // What the last fstat showed; the fingerprint is checked again whenever it changes.
  std::uint64_t seen_size = 0;
  std::int64_t seen_mtime = 0;
  SteadyClock::time_point last_growth;
  // Last state the sink accepted, to rewind to when an append fails.
  std::uint64_t committed_offset = 0;
  bool committed_discarding = false;
  bool state_dirty = false;  // the state changed without records to carry it
  bool rotated = false;      // no longer at the name it was found under
  bool gone = false;         // no pattern matches it any more
  bool finished = false;     // rotated, read to its end, incomplete last line emitted
  bool error_logged = false;
};

// The lines of one file collected for one append, in a RecordBatch.
class Batch final : public tail::LineHandler {
 public:
  explicit Batch(std::string input) : records_(RecordKind::kLogLine, std::move(input)) {}

  void begin(const std::string* path, std::uint64_t timestamp_ns) {
    path_ = path;
    timestamp_ns_ = timestamp_ns;
  }

  void line(std::uint64_t offset, std::uint8_t flags, std::string_view content) override {
    encodeLogLineMeta(LogLineMeta{flags, offset, *path_}, meta_scratch_);
    // Refused only for a bad input name or a line over the record limit, which the config's
    // bounds rule out; counted all the same, as lines read and not stored.
    if (!records_.add(timestamp_ns_, meta_scratch_,
                      std::span<const std::byte>(reinterpret_cast<const std::byte*>(content.data()),
                                                 content.size()))) {
      ++refused_;
      ++refused_total_;
    }
  }

  [[nodiscard]] bool full() const override {
    return records_.size() >= kBatchLines || records_.payloadBytes() >= kBatchBytes;
  }
  [[nodiscard]] bool empty() const { return records_.empty(); }
  [[nodiscard]] std::size_t size() const { return records_.size(); }
  // Lines handed to line() since the batch was created, stored in it or refused.
  [[nodiscard]] std::uint64_t lines() const { return records_.size() + refused_total_; }

  RecordBatch& records() { return records_; }
  // Lines add() refused since the last call.
  std::uint64_t takeRefused() { return std::exchange(refused_, 0); }
  void clear() { records_.clear(); }

 private:
  std::uint64_t refused_ = 0;
  std::uint64_t refused_total_ = 0;
  const std::string* path_ = nullptr;
  std::uint64_t timestamp_ns_ = 0;
  std::vector<std::byte> meta_scratch_;
  RecordBatch records_;
};

struct Counters {
  std::atomic<std::uint64_t> files_watched{0};
  std::atomic<std::uint64_t> files_rotated{0};
  std::atomic<std::uint64_t> files_truncated{0};
  std::atomic<std::uint64_t> lines_read{0};
  std::atomic<std::uint64_t> lines_stored{0};
  std::atomic<std::uint64_t> lines_truncated{0};
  std::atomic<std::uint64_t> lines_split{0};
  std::atomic<std::uint64_t> bytes_read{0};
  std::atomic<std::uint64_t> read_errors{0};
};

class FileTailSource final : public Source {
 public:
  FileTailSource(FileTailOptions options, RecordSink& sink)
      : options_(std::move(options)),
        sink_(sink),
        log_(captureLogger()),
        batch_(options_.name),
        rotate_wait_(std::max<SteadyClock::duration>(kMinRotateWait, 4 * options_.poll_interval)),
        poll_ms_(static_cast<std::uint64_t>(std::max<std::int64_t>(
            1, std::chrono::duration_cast<std::chrono::milliseconds>(options_.poll_interval)
                   .count()))),
        read_buf_(kReadChunk) {}

  ~FileTailSource() override { stop(); }
  FileTailSource(const FileTailSource&) = delete;
  FileTailSource& operator=(const FileTailSource&) = delete;

  [[nodiscard]] const std::string& name() const override { return options_.name; }

  Status start() override;
  void stop() override;
  [[nodiscard]] bool finished() const override { return false; }
  [[nodiscard]] std::vector<Counter> counters() const override;

 private:
  // Loop thread (and start(), before the thread exists).
  void tick();
  void scan(bool initial);
  void discover(const std::string& path, const struct stat& st, bool initial);
  Result<std::pair<std::uint64_t, bool>> startOffset(TailFile& f, const struct stat& st,
                                                     bool initial);
  bool readFile(TailFile& f);
  void restartFile(TailFile& f, std::uint64_t size, const char* why);
  bool appendBatch(TailFile& f, bool tombstone = false);
  void finishRotated(TailFile& f, SteadyClock::time_point now);
  void loadSavedState(const std::vector<StateWrite>& entries);
  void readError(TailFile& f, const std::string& what);
  void noteSinkError(const Error& e);
  [[nodiscard]] SavedFile savedOf(const TailFile& f) const;

  static void onTimer(uv_timer_t* t);
  static void onStopAsync(uv_async_t* a);

  const FileTailOptions options_;
  RecordSink& sink_;
  std::shared_ptr<spdlog::logger> log_;
  Counters counters_;

  // Loop thread state.
  std::map<FileIdentity, std::unique_ptr<TailFile>> files_;
  std::map<FileIdentity, SavedFile> saved_;  // saved offsets of files not open now
  std::set<std::string> failing_paths_;      // open failures already logged
  std::uint64_t next_order_ = 0;
  Batch batch_;
  const SteadyClock::duration rotate_wait_;
  const std::uint64_t poll_ms_;  // the timer's period
  std::vector<char> read_buf_;
  bool sink_closed_ = false;
  bool sink_error_logged_ = false;
  bool glob_error_logged_ = false;

  // Lifetime.
  std::mutex lifecycle_mu_;
  bool started_ = false;
  std::thread thread_;
  uv_loop_t loop_{};
  uv_timer_t timer_{};
  uv_async_t stop_async_{};
  std::atomic<bool> stopping_{false};
};

Status FileTailSource::start() {
  std::lock_guard lk(lifecycle_mu_);
  if (started_) return inputError(ErrorCode::kInvalidArgument, options_.name, "already started");
  auto saved = sink_.readStatePrefix(tail::stateKeyPrefix(options_.name));
  if (!saved) {
    return inputError(saved.error().code, options_.name,
                      "reading saved offsets: " + saved.error().message, saved.error().retryable);
  }
  loadSavedState(*saved);
  // The first scan runs here so that start_at=end means "the end when start() was called", and
  // a file that appears afterwards is always read from its beginning.
  scan(true);

  if (int rc = uv_loop_init(&loop_); rc != 0) {
    return inputError(ErrorCode::kIo, options_.name,
                      fmt::format("uv_loop_init: {}", uv_strerror(rc)));
  }
  uv_timer_init(&loop_, &timer_);
  uv_async_init(&loop_, &stop_async_, &FileTailSource::onStopAsync);
  timer_.data = this;
  stop_async_.data = this;
  uv_timer_start(&timer_, &FileTailSource::onTimer, 0, poll_ms_);
  started_ = true;
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "cistern-tail");
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  });
  return ok();
}

void FileTailSource::stop() {
  std::lock_guard lk(lifecycle_mu_);
  if (!thread_.joinable()) return;
  stopping_.store(true);
  uv_async_send(&stop_async_);
  // An append blocked on a full sink holds the thread until the sink makes room or is closed
  // (the agent closes it on shutdown, which fails the append with kClosed).
  thread_.join();
  counters_.files_watched.store(0);
  files_.clear();
}

void FileTailSource::onTimer(uv_timer_t* t) { static_cast<FileTailSource*>(t->data)->tick(); }

void FileTailSource::onStopAsync(uv_async_t* a) {
  auto* self = static_cast<FileTailSource*>(a->data);
  uv_timer_stop(&self->timer_);
  // The handles are members: they outlive the loop, which stops once both are closed.
  uv_close(reinterpret_cast<uv_handle_t*>(&self->timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->stop_async_), nullptr);
}

std::vector<Counter> FileTailSource::counters() const {
  const Counters& c = counters_;
  return {
      {"files_watched", c.files_watched.load()},     {"files_rotated", c.files_rotated.load()},
      {"files_truncated", c.files_truncated.load()}, {"lines_read", c.lines_read.load()},
      {"lines_stored", c.lines_stored.load()},       {"lines_truncated", c.lines_truncated.load()},
      {"lines_split", c.lines_split.load()},         {"bytes_read", c.bytes_read.load()},
      {"read_errors", c.read_errors.load()},
  };
}

void FileTailSource::loadSavedState(const std::vector<StateWrite>& entries) {
  const std::string prefix = tail::stateKeyPrefix(options_.name);
  for (const StateWrite& w : entries) {
    auto id = tail::parseStateKeySuffix(std::string_view(w.key).substr(prefix.size()));
    if (!id) continue;              // another input's key that starts with this input's name
    if (w.value.empty()) continue;  // tombstone
    auto file = tail::decodeState(w.value);
    if (!file || file->id != *id) {
      // Reading such a file from its start (or end) is all that can be done; say so once.
      log_->warn("input={} key={} event=corrupt_saved_offset action=ignored", options_.name, w.key);
      continue;
    }
    saved_[*id] = std::move(*file);
  }
}

SavedFile FileTailSource::savedOf(const TailFile& f) const {
  return SavedFile{f.id, f.fp, f.scanner.consumed(), f.scanner.discarding(), f.path};
}

void FileTailSource::tick() {
  if (stopping_.load()) return;
  if (sink_closed_) {
    uv_timer_stop(&timer_);  // nothing can be handed over any more; stop() closes the rest
    return;
  }
  scan(false);
  std::vector<TailFile*> order;
  order.reserve(files_.size());
  for (auto& [id, f] : files_) order.push_back(f.get());
  std::sort(order.begin(), order.end(),
            [](const TailFile* a, const TailFile* b) { return a->order < b->order; });
  const auto now = SteadyClock::now();
  bool behind = false;
  for (TailFile* f : order) {
    if (stopping_.load() || sink_closed_) break;
    behind = readFile(*f) || behind;
    finishRotated(*f, now);
  }
  std::erase_if(files_, [](const auto& kv) { return kv.second->fd < 0; });
  counters_.files_watched.store(files_.size());
  // A file that used its whole budget has more to read: the next tick comes at once instead of
  // a poll interval later, or the tail could never read faster than kTickBudget per interval.
  if (behind && !stopping_.load() && !sink_closed_) {
    uv_timer_start(&timer_, &FileTailSource::onTimer, 0, poll_ms_);
  }
}

void FileTailSource::scan(bool initial) {
  struct Found {
    std::string path;
    struct stat st {};
  };
  std::map<FileIdentity, Found> found;
  bool complete = true;
  for (const std::string& pattern : options_.paths) {
    glob_t g{};
    t_glob_errors = 0;
    const int rc = ::glob(pattern.c_str(), 0, &onGlobError, &g);
    if (rc != 0 && rc != GLOB_NOMATCH) complete = false;
    if (t_glob_errors != 0) complete = false;
    for (std::size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) {
      Found entry;
      entry.path = g.gl_pathv[i];
      // Follows symlinks: a link to a log is tailed as the file it points to.
      if (::stat(entry.path.c_str(), &entry.st) != 0 || !S_ISREG(entry.st.st_mode)) continue;
      found.try_emplace(identityOf(entry.st), std::move(entry));  // a hard link's first name wins
    }
    ::globfree(&g);
  }
  if (!complete) {
    counters_.read_errors.fetch_add(1);
    if (!glob_error_logged_) {
      log_->warn("input={} event=glob_incomplete reason=\"a directory could not be read\"",
                 options_.name);
      glob_error_logged_ = true;
    }
  } else {
    glob_error_logged_ = false;
  }

  for (auto& [id, f] : files_) {
    auto it = found.find(id);
    if (it != found.end()) {
      if (it->second.path != f->path) {
        if (!f->rotated) counters_.files_rotated.fetch_add(1);
        f->rotated = true;
        f->path = it->second.path;
        f->state_dirty = true;
      }
      f->gone = false;
      found.erase(it);
    } else if (complete && !f->gone) {
      // Renamed away or deleted. A deleted file (no links left) is not a rotation.
      f->gone = true;
      struct stat st {};
      const bool deleted = ::fstat(f->fd, &st) == 0 && st.st_nlink == 0;
      if (!f->rotated && !deleted) counters_.files_rotated.fetch_add(1);
      f->rotated = true;
    }
  }

  // Oldest first, so that after a rotation the old file is read before the new one.
  std::vector<Found*> fresh;
  fresh.reserve(found.size());
  for (auto& kv : found) fresh.push_back(&kv.second);
  std::sort(fresh.begin(), fresh.end(), [](const Found* a, const Found* b) {
    const auto ma = mtimeNs(a->st);
    const auto mb = mtimeNs(b->st);
    return ma != mb ? ma < mb : a->path < b->path;
  });
  for (const Found* entry : fresh) discover(entry->path, entry->st, initial);
  counters_.files_watched.store(files_.size());
}

void FileTailSource::discover(const std::string& path, const struct stat& listed, bool initial) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return;  // vanished since glob(3) listed it
    counters_.read_errors.fetch_add(1);
    if (failing_paths_.insert(path).second) {
      log_->warn("input={} path={} event=open_failed error=\"{}\" action=retry_next_poll",
                 options_.name, path, errnoText(err));
    }
    return;
  }
  auto f = std::make_unique<TailFile>(options_.max_line_bytes, options_.long_lines);
  f->fd = fd;
  f->path = path;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || identityOf(st) != identityOf(listed)) {
    return;  // replaced between glob(3) and open(2): the next poll sees the new file
  }
  if (failing_paths_.erase(path) != 0) {
    log_->info("input={} path={} event=open_recovered", options_.name, path);
  }
  f->id = identityOf(st);
  f->key = tail::stateKey(options_.name, f->id);
  auto start = startOffset(*f, st, initial);
  if (!start) {
    readError(*f, start.error().message);
    return;
  }
  f->scanner.reset(start->first, start->second);
  f->committed_offset = start->first;
  f->committed_discarding = start->second;
  f->seen_size = static_cast<std::uint64_t>(st.st_size);
  f->seen_mtime = mtimeNs(st);
  f->last_growth = SteadyClock::now();
  f->order = next_order_++;
  log_->info("input={} path={} event=watching offset={}", options_.name, path, start->first);
  files_.emplace(f->id, std::move(f));
}

// Where to start reading a newly opened file, and whether that is inside a skipped long line.
// Also takes the file's fingerprint and marks its state to be written.
Result<std::pair<std::uint64_t, bool>> FileTailSource::startOffset(TailFile& f,
                                                                   const struct stat& st,
                                                                   bool initial) {
  const auto size = static_cast<std::uint64_t>(st.st_size);
  auto saved = saved_.find(f.id);
  const std::uint64_t want = std::max<std::uint64_t>(
      options_.fingerprint_bytes, saved != saved_.end() ? saved->second.fp.length : 0);
  auto prefix = readPrefix(f.fd, std::min(size, want));
  if (!prefix) return tl::unexpected(prefix.error());
  f.fp = tail::takeFingerprint(*prefix, options_.fingerprint_bytes);
  f.state_dirty = true;
  if (saved != saved_.end()) {
    const SavedFile s = std::move(saved->second);
    saved_.erase(saved);
    if (auto fp = tail::matchFingerprint(*prefix, s.fp, options_.fingerprint_bytes)) {
      if (s.offset <= size) {
        f.state_dirty = s.fp != *fp || s.path != f.path;
        return std::make_pair(s.offset, s.discarding);
      }
      // Same first bytes, but shorter than what was read: truncated and rewritten meanwhile.
      counters_.files_truncated.fetch_add(1);
    }
    // Otherwise the inode was reused by another file, or the file was rewritten from its start.
    return std::make_pair(std::uint64_t{0}, false);
  }
  if (!initial || options_.start_at == StartAt::kBeginning || size == 0) {
    return std::make_pair(std::uint64_t{0}, false);
  }
  // start_at=end: from the start of the last line, so a line being written now is read whole.
  // Failing to find it within a record's length, skip the rest of that long line.
  const std::uint64_t back = std::min<std::uint64_t>(size, options_.max_line_bytes + 2);
  std::string tail_bytes(back, '\0');
  std::size_t got = 0;
  while (got < back) {
    const ssize_t r =
        ::pread(f.fd, tail_bytes.data() + got, back - got, static_cast<off_t>(size - back + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(ErrorCode::kIo, "read: " + errnoText(errno), true);
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  tail_bytes.resize(got);
  const std::size_t nl = tail_bytes.rfind('\n');
  if (nl != std::string::npos) return std::make_pair(size - back + nl + 1, false);
  if (back == size) return std::make_pair(std::uint64_t{0}, false);
  return std::make_pair(size, true);
}

void FileTailSource::readError(TailFile& f, const std::string& what) {
  counters_.read_errors.fetch_add(1);
  if (!f.error_logged) {
    log_->warn("input={} path={} event=read_failed error=\"{}\" action=retry_next_poll",
               options_.name, f.path, what);
    f.error_logged = true;
  }
}

void FileTailSource::restartFile(TailFile& f, std::uint64_t size, const char* why) {
  counters_.files_truncated.fetch_add(1);
  log_->info("input={} path={} event=truncated reason={} offset={} size={}", options_.name, f.path,
             why, f.scanner.readPosition(), size);
  f.scanner.reset(0, false);
  f.finished = false;
  f.state_dirty = true;
}

// Reads what the file gained, up to kTickBudget. Returns true when it stopped at the budget with
// more to read.
bool FileTailSource::readFile(TailFile& f) {
  if (f.fd < 0) return false;
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    readError(f, "fstat: " + errnoText(errno));
    return false;
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  const auto mtime = mtimeNs(st);
  if (size < f.scanner.readPosition()) {
    restartFile(f, size, "shrank");
  }
  if (size != f.seen_size || mtime != f.seen_mtime ||
      f.fp.length < std::min<std::uint64_t>(size, options_.fingerprint_bytes)) {
    // Truncated and written again past the old offset before this poll: only the first bytes
    // tell (a rewrite that keeps them identical is indistinguishable from an append).
    auto prefix =
        readPrefix(f.fd, std::min(size, std::max(options_.fingerprint_bytes, f.fp.length)));
    if (!prefix) {
      readError(f, prefix.error().message);
      return false;
    }
    auto fp = tail::matchFingerprint(*prefix, f.fp, options_.fingerprint_bytes);
    if (!fp) {
      if (f.scanner.readPosition() > 0) restartFile(f, size, "content_replaced");
      fp = tail::takeFingerprint(*prefix, options_.fingerprint_bytes);
    }
    if (*fp != f.fp) f.state_dirty = true;
    f.fp = *fp;
  }
  if (size > f.seen_size || size > f.scanner.readPosition()) {
    f.last_growth = SteadyClock::now();
    f.finished = false;  // a rotated file written again may get another incomplete last line
  }
  f.seen_size = size;
  f.seen_mtime = mtime;

  std::uint64_t budget = kTickBudget;
  bool read_ok = true;
  while (f.scanner.readPosition() < size && budget > 0 && !stopping_.load()) {
    const std::uint64_t pos = f.scanner.readPosition();
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>({read_buf_.size(), size - pos, budget}));
    const ssize_t n = ::pread(f.fd, read_buf_.data(), want, static_cast<off_t>(pos));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      readError(f, "read: " + errnoText(errno));
      read_ok = false;
      break;
    }
    if (n == 0) break;  // shrank since fstat; the next poll sees it
    const auto got = static_cast<std::size_t>(n);
    counters_.bytes_read.fetch_add(got);
    budget -= got;
    std::string_view data(read_buf_.data(), got);
    batch_.begin(&f.path, platform::SystemClock::instance().wallNanos());
    while (!data.empty()) {
      const std::uint64_t before = batch_.lines();
      data.remove_prefix(f.scanner.feed(data, batch_));
      counters_.lines_read.fetch_add(batch_.lines() - before);
      if (batch_.full() && !appendBatch(f)) return false;
    }
  }
  if (read_ok && f.error_logged) {
    log_->info("input={} path={} event=read_recovered", options_.name, f.path);
    f.error_logged = false;
  }
  if ((!batch_.empty() || f.state_dirty) && !appendBatch(f)) return false;
  return read_ok && budget == 0 && f.scanner.readPosition() < size;
}

// Hands the batch (possibly empty) to the sink with the file's state. On failure the file is
// rewound to the last accepted state, so nothing is skipped; returns false then.
bool FileTailSource::appendBatch(TailFile& f, bool tombstone) {
  const auto counts = f.scanner.takeCounts();
  counters_.lines_truncated.fetch_add(counts.truncated);
  counters_.lines_split.fetch_add(counts.split);
  const std::vector<StateWrite> state{
      {f.key, tombstone ? std::string() : tail::encodeState(savedOf(f))}};
  const auto n = batch_.size();
  if (const auto refused = batch_.takeRefused(); refused > 0) {
    log_->error("input={} path={} event=lines_refused count={}", options_.name, f.path, refused);
  }
  auto ticket = sink_.appendBatch(batch_.records(), state, Wait::kYes);
  batch_.clear();
  if (!ticket) {
    noteSinkError(ticket.error());
    f.scanner.reset(f.committed_offset, f.committed_discarding);
    f.finished = false;
    return false;
  }
  counters_.lines_stored.fetch_add(n);
  f.committed_offset = f.scanner.consumed();
  f.committed_discarding = f.scanner.discarding();
  f.state_dirty = false;
  if (sink_error_logged_) {
    log_->info("input={} event=sink_recovered", options_.name);
    sink_error_logged_ = false;
  }
  return true;
}

void FileTailSource::noteSinkError(const Error& e) {
  if (e.code == ErrorCode::kClosed) {
    // Shutting down: what was read and not handed over stays in the file, after the saved
    // offset, and is counted as lines_read - lines_stored.
    sink_closed_ = true;
    log_->info("input={} event=sink_closed", options_.name);
    return;
  }
  if (!sink_error_logged_) {
    log_->error("input={} event=append_failed error=\"{}\" action=retry_next_poll", options_.name,
                e.describe());
    sink_error_logged_ = true;
  }
}

// A file that is no longer at its name will not get the end of its last line: once it has been
// read to its end and has not grown for the rotate wait, that line is emitted as it is, and a
// file no pattern matches any more is closed.
void FileTailSource::finishRotated(TailFile& f, SteadyClock::time_point now) {
  if (!f.rotated || f.fd < 0 || sink_closed_ || stopping_.load()) return;
  if (f.scanner.readPosition() < f.seen_size || now - f.last_growth < rotate_wait_) return;
  if (!f.finished) {
    batch_.begin(&f.path, platform::SystemClock::instance().wallNanos());
    const std::uint64_t before = batch_.lines();
    if (f.scanner.finish(batch_)) {
      counters_.lines_read.fetch_add(batch_.lines() - before);
      if (!appendBatch(f)) return;
    }
    f.finished = true;
  }
  if (!f.gone) return;
  struct stat st {};
  const bool deleted = ::fstat(f.fd, &st) == 0 && st.st_nlink == 0;
  // A deleted file's inode may be reused, so its state becomes a tombstone; a file renamed out
  // of the patterns keeps its offset in case it comes back.
  if (!appendBatch(f, deleted)) return;
  if (!deleted) saved_[f.id] = savedOf(f);
  log_->info("input={} path={} event=closed reason={} offset={}", options_.name, f.path,
             deleted ? "deleted" : "renamed_away", f.scanner.consumed());
  ::close(f.fd);
  f.fd = -1;
}

}  // namespace

Result<std::unique_ptr<Source>> makeFileTailSource(const FileTailOptions& options,
                                                   RecordSink& sink) {
  if (auto st = checkInputName(options.name); !st) {
    return inputError(ErrorCode::kConfig, options.name, st.error().message);
  }
  const std::string& name = options.name;
  if (options.paths.empty()) {
    return inputError(ErrorCode::kConfig, name, "no paths: give at least one glob pattern");
  }
  if (options.max_line_bytes < 1 || options.max_line_bytes > kMaxLineBytesLimit) {
    return inputError(ErrorCode::kConfig, name,
                      fmt::format("max_line_bytes {} is outside 1..{}", options.max_line_bytes,
                                  kMaxLineBytesLimit));
  }
  if (options.fingerprint_bytes < 1 || options.fingerprint_bytes > kMaxFingerprintBytes) {
    return inputError(ErrorCode::kConfig, name,
                      fmt::format("fingerprint_bytes {} is outside 1..{}",
                                  options.fingerprint_bytes, kMaxFingerprintBytes));
  }
  if (options.poll_interval < 1ms || options.poll_interval > 1h) {
    return inputError(ErrorCode::kConfig, name, "poll_interval is outside 1ms..1h");
  }
  for (const std::string& pattern : options.paths) {
    if (pattern.empty()) return inputError(ErrorCode::kConfig, name, "a path pattern is empty");
    if (pattern.size() >= PATH_MAX) {
      return inputError(ErrorCode::kConfig, name, "a path pattern is longer than PATH_MAX");
    }
    const std::string dir = fixedDirectory(pattern);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
      const int err = errno;
      return inputError(
          err == ENOENT || err == ENOTDIR ? ErrorCode::kConfig : ErrorCode::kIo, name,
          fmt::format("directory '{}' of pattern '{}': {}", dir, pattern, errnoText(err)));
    }
    if (!S_ISDIR(st.st_mode)) {
      return inputError(ErrorCode::kConfig, name,
                        fmt::format("'{}' in pattern '{}' is not a directory", dir, pattern));
    }
    if (::access(dir.c_str(), R_OK | X_OK) != 0) {
      return inputError(ErrorCode::kIo, name,
                        fmt::format("directory '{}' of pattern '{}' cannot be read: {}", dir,
                                    pattern, errnoText(errno)));
    }
  }
  return std::unique_ptr<Source>(std::make_unique<FileTailSource>(options, sink));
}

}  // namespace cistern::capture
