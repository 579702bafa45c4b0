#include "file_sender.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cistern/core/pcapng.h"
#include "cistern/core/record.h"
#include "cistern/core/record_json.h"
#include "cistern/core/record_meta.h"

namespace cistern::transport {
namespace {

namespace fs = std::filesystem;

std::string systemError(int err) { return std::strerror(err); }

// One rotating file series of one format.
class Series {
 public:
  Series(fs::path dir, std::string stem, std::string extension, std::uint64_t max_bytes,
         std::uint32_t max_files)
      : dir_(std::move(dir)),
        stem_(std::move(stem)),
        extension_(std::move(extension)),
        max_bytes_(max_bytes),
        max_files_(std::max<std::uint32_t>(1, max_files)) {}
  Series(const Series&) = delete;
  Series& operator=(const Series&) = delete;
  ~Series() { closeFile(); }

  [[nodiscard]] bool isOpen() const { return fd_ >= 0; }
  [[nodiscard]] bool full() const { return fd_ >= 0 && size_ >= max_bytes_; }
  [[nodiscard]] std::uint64_t size() const { return size_; }
  [[nodiscard]] const fs::path& path() const { return path_; }

  // Opens the next file of the series; `header` is written first (a pcapng section header).
  Status open(std::uint64_t number, const std::vector<std::byte>& header) {
    closeFile();
    path_ = dir_ / fmt::format("{}.{}.{}", stem_, number, extension_);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_APPEND, 0640);
    if (fd_ < 0) {
      return fail(ErrorCode::kIo,
                  fmt::format("creating {}: {}", path_.string(), systemError(errno)), true);
    }
    size_ = 0;
    dirty_ = true;
    created_ = true;
    if (auto w = write(header); !w) return w;
    prune();
    return ok();
  }

  Status write(const std::vector<std::byte>& data) {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(ErrorCode::kIo,
                    fmt::format("writing {}: {}", path_.string(), systemError(errno)), true);
      }
      done += static_cast<std::size_t>(n);
    }
    size_ += data.size();
    if (!data.empty()) dirty_ = true;
    return ok();
  }

  // Makes what was written durable: the data, and the directory entry of a new file.
  Status sync() {
    if (fd_ < 0 || !dirty_) return ok();
    if (::fdatasync(fd_) != 0) {
      return fail(ErrorCode::kIo, fmt::format("syncing {}: {}", path_.string(), systemError(errno)),
                  true);
    }
    if (created_) {
      const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
      }
      created_ = false;
    }
    dirty_ = false;
    return ok();
  }

  // Cuts the file back to `size` bytes (undoing a failed batch).
  void truncate(std::uint64_t size) {
    if (fd_ < 0 || size > size_) return;
    if (::ftruncate(fd_, static_cast<off_t>(size)) == 0) size_ = size;
  }

  void closeFile() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // The n of "<stem>.<n>.<extension>", or nullopt when `name` is not a file of the series.
  static std::optional<std::uint64_t> numberOf(const std::string& name, const std::string& stem,
                                               const std::string& extension);

 private:
  // Deletes the oldest files of the series beyond max_files.
  void prune() {
    std::vector<std::pair<std::uint64_t, fs::path>> files;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      auto n = numberOf(entry.path().filename().string(), stem_, extension_);
      if (n) files.emplace_back(*n, entry.path());
    }
    if (files.size() <= max_files_) return;
    std::sort(files.begin(), files.end());
    for (std::size_t i = 0; i + max_files_ < files.size(); ++i) fs::remove(files[i].second, ec);
  }

  fs::path dir_;
  std::string stem_;
  std::string extension_;
  std::uint64_t max_bytes_;
  std::uint32_t max_files_;
  fs::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  bool dirty_ = false;
  bool created_ = false;
};

std::optional<std::uint64_t> Series::numberOf(const std::string& name, const std::string& stem,
                                              const std::string& extension) {
  const std::string prefix = stem + ".";
  const std::string suffix = "." + extension;
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return std::nullopt;
  }
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.empty() || digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::stoull(digits);
}

class FileSender final : public Sender {
 public:
  FileSender(platform::EventLoop& loop, FileOutputOptions options, std::string version,
             std::uint64_t next_number)
      : loop_(loop),
        options_(std::move(options)),
        endpoint_("file://" + options_.path),
        version_(std::move(version)),
        next_number_(next_number),
        pcapng_(options_.path, options_.name, "pcapng", options_.max_file_bytes,
                options_.max_files),
        ndjson_(options_.path, options_.name, "ndjson", options_.max_file_bytes,
                options_.max_files) {
    worker_ = std::thread([this] { work(); });
  }

  ~FileSender() override { stopWorker(); }

  [[nodiscard]] const std::string& endpoint() const override { return endpoint_; }

  void send(std::shared_ptr<const Batch> batch, std::function<void(SendResult)> done) override {
    {
      std::lock_guard lk(mu_);
      if (!stopping_) {
        jobs_.push_back(Job{std::move(batch), std::move(done), std::chrono::steady_clock::now()});
        cv_.notify_one();
        return;
      }
    }
    SendResult r;
    r.error = "closed";
    loop_.post([done = std::move(done), r] { done(r); });
  }

  void probe(std::function<void(SendResult)> done) override {
    SendResult r;
    if (::access(options_.path.c_str(), W_OK | X_OK) == 0) {
      r.outcome = Outcome::kDelivered;
    } else {
      r.error = fmt::format("directory {} is not writable: {}", options_.path, systemError(errno));
    }
    loop_.post([done = std::move(done), r] { done(r); });
  }

  [[nodiscard]] std::size_t maxInFlight() const override {
    return std::max<std::size_t>(1, options_.batch.max_in_flight);
  }

  void close(std::function<void()> closed) override {
    // Waits for the batch being written (at most one sync), fails the ones still queued.
    stopWorker();
    for (auto& job : abandoned_) {
      SendResult r;
      r.error = "closed";
      loop_.post([done = std::move(job.done), r] { done(r); });
    }
    abandoned_.clear();
    loop_.post(std::move(closed));
  }

 private:
  struct Job {
    std::shared_ptr<const Batch> batch;
    std::function<void(SendResult)> done;
    std::chrono::steady_clock::time_point queued;
  };

  void stopWorker() {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_one();
    if (worker_.joinable()) worker_.join();
    std::lock_guard lk(mu_);
    for (auto& job : jobs_) abandoned_.push_back(std::move(job));
    jobs_.clear();
  }

  void work() {
    pthread_setname_np(pthread_self(), "cistern-file");
    for (;;) {
      std::deque<Job> run;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
        if (stopping_) return;
        run.swap(jobs_);
      }
      // Write every queued batch, then one sync covers them all (group commit).
      std::vector<SendResult> results(run.size());
      for (std::size_t i = 0; i < run.size(); ++i) results[i] = writeBatch(*run[i].batch);
      Status synced = pcapng_.sync();
      if (synced) synced = ndjson_.sync();
      for (std::size_t i = 0; i < run.size(); ++i) {
        SendResult& r = results[i];
        if (!synced && r.outcome == Outcome::kDelivered) {
          r.outcome = Outcome::kRetry;
          r.error = synced.error().message;
        }
        r.latency = std::chrono::steady_clock::now() - run[i].queued;
        loop_.post([done = std::move(run[i].done), r] { done(r); });
      }
    }
  }

  Status rotateIfNeeded(Series& series, bool pcapng) {
    if (series.isOpen() && !series.full()) return ok();
    std::vector<std::byte> header;
    if (pcapng) {
      pcapng_encoder_ = PcapngEncoder{};
      pcapng_encoder_.begin(header, fmt::format("cistern {}", version_));
    }
    return series.open(next_number_++, header);
  }

  SendResult writeBatch(const Batch& batch) {
    SendResult result;
    const std::uint64_t pcapng_start = pcapng_.size();
    const std::uint64_t ndjson_start = ndjson_.size();
    const bool pcapng_was_open = pcapng_.isOpen();
    const bool ndjson_was_open = ndjson_.isOpen();
    std::vector<std::byte> packets;
    std::vector<std::byte> lines;
    // A batch goes whole into the files open when it starts (rotation happens between batches),
    // so undoing it is one truncate per file.
    Status status = ok();
    for (const auto& frame : batch.frames.frames()) {
      RecordReader reader(frame.body);
      while (const RecordView* r = reader.next()) {
        if (r->kind == RecordKind::kPacket) {
          auto meta = decodePacketMeta(r->meta);
          if (meta) {
            if (status && !pcapng_.isOpen()) status = rotateIfNeeded(pcapng_, true);
            pcapng_encoder_.packet(packets, r->input, meta->link_type, r->timestamp_ns, r->payload,
                                   meta->original_length);
            continue;
          }
          // Damaged metadata: the NDJSON line keeps the bytes and says what was wrong.
        }
        const std::string json = recordToJson(*r);
        const auto* p = reinterpret_cast<const std::byte*>(json.data());
        lines.insert(lines.end(), p, p + json.size());
        lines.push_back(std::byte{'\n'});
      }
      if (reader.failed()) ++result.rejected_records;
    }
    if (status && !packets.empty()) status = pcapng_.write(packets);
    if (status && !lines.empty()) {
      if (!ndjson_.isOpen()) status = rotateIfNeeded(ndjson_, false);
      if (status) status = ndjson_.write(lines);
    }
    result.bytes_sent = packets.size() + lines.size();
    if (!status) {
      if (pcapng_was_open) pcapng_.truncate(pcapng_start);
      if (ndjson_was_open) ndjson_.truncate(ndjson_start);
      // The encoder may have declared interfaces in the bytes just cut off: the next batch starts
      // a new pcapng file with a fresh encoder rather than refer to them.
      if (!packets.empty()) pcapng_.closeFile();
      result.outcome = Outcome::kRetry;
      result.error = status.error().message;
      return result;
    }
    // Rotate after the batch, so the next one starts a new file when this one is full.
    if (pcapng_.full()) pcapng_.closeFile();
    if (ndjson_.full()) ndjson_.closeFile();
    result.outcome = Outcome::kDelivered;
    if (result.rejected_records > 0) {
      result.error = "damaged records in a frame body were left out of the archive";
    }
    return result;
  }

  platform::EventLoop& loop_;
  FileOutputOptions options_;
  std::string endpoint_;
  std::string version_;
  std::uint64_t next_number_;  // worker thread only
  Series pcapng_;              // worker thread only
  Series ndjson_;              // worker thread only
  PcapngEncoder pcapng_encoder_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;       // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  std::deque<Job> abandoned_;  // loop thread, after the worker stopped
  std::thread worker_;
};

}  // namespace

Result<std::unique_ptr<Sender>> makeFileSender(platform::EventLoop& loop,
                                               const FileOutputOptions& options,
                                               const std::string& version) {
  const fs::path dir(options.path);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return fail(ErrorCode::kConfig, fmt::format("output '{}': cannot create directory {}: {}",
                                                options.name, options.path, ec.message()));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return fail(ErrorCode::kConfig, fmt::format("output '{}': directory {} is not writable: {}",
                                                options.name, options.path, systemError(errno)));
  }
  std::uint64_t next = 1;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    for (const char* ext : {"pcapng", "ndjson"}) {
      if (auto n = Series::numberOf(name, options.name, ext)) next = std::max(next, *n + 1);
    }
  }
  return std::unique_ptr<Sender>(new FileSender(loop, options, version, next));
}

}  // namespace cistern::transport
