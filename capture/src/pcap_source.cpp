// PcapSource: libpcap live capture and pcap/pcapng file replay into a RecordSink.
//
// The capture thread owns the pcap handle while it runs; other threads touch it only through
// pcap_breakloop() (documented as callable from another thread; on Linux it also wakes poll()).
// Counters are updated once per batch under a small mutex, so that every snapshot reconciles
// exactly (captured = dropped_agent + stored), which independent atomics could not promise.
#include <pcap/pcap.h>
#include <pthread.h>
#include <sys/stat.h>
#ifdef __GLIBC__
#include <stdio_ext.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <span>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cistern/capture/pcap_source.h"
#include "cistern/core/record_batch.h"
#include "cistern/core/record_meta.h"
#include "input_error.h"
#include "pcap_util.h"

namespace cistern::capture {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Appends are amortized over this many packets; the byte bound keeps a batch of jumbo frames
// from holding tens of MiB.
constexpr std::size_t kBatchPackets = 256;
constexpr std::size_t kBatchBytes = 4U << 20U;
constexpr std::uint32_t kMaxSnaplen = 262144;  // libpcap's MAXIMUM_SNAPLEN
constexpr std::size_t kFileReadBuffer = 1U << 20U;
constexpr auto kStatsInterval = 100ms;
// A live handle that fails (interface went down) is retried at this pace, not in a hot loop.
constexpr auto kLiveErrorBackoff = 1s;
constexpr auto kSinkFullLogInterval = 10s;
// Timestamp gaps larger than this (damaged files) are not slept through whole in realtime replay.
constexpr std::uint64_t kMaxReplayGapNs = 1ULL << 62U;

#ifdef __linux__
// libpcap on Linux reads the interface's rx_dropped (sysfs or /proc/net/dev) into ps_ifdrop.
constexpr bool kPlatformReportsIfdrop = true;
#else
constexpr bool kPlatformReportsIfdrop = false;
#endif

std::shared_ptr<spdlog::logger> captureLogger() {
  if (auto existing = spdlog::get("capture")) return existing;
  // Other inputs of this module may register the logger concurrently; registering twice throws.
  try {
    return spdlog::stderr_color_mt("capture");
  } catch (const spdlog::spdlog_ex&) {
    if (auto existing = spdlog::get("capture")) return existing;
    return spdlog::default_logger();
  }
}

struct PcapCloser {
  void operator()(pcap_t* p) const noexcept { pcap_close(p); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;

std::string pcapText(pcap_t* p, int status) {
  std::string text = pcap_geterr(p);
  if (text.empty()) text = pcap_statustostr(status);
  return text;
}

struct Totals {
  std::uint64_t received = 0;
  std::uint64_t captured = 0;
  std::uint64_t dropped_kernel = 0;
  std::uint64_t dropped_interface = 0;
  std::uint64_t dropped_agent = 0;
  std::uint64_t stored = 0;
  std::uint64_t bytes = 0;
  std::uint64_t file_errors = 0;
};

class PcapSource final : public Source {
 public:
  PcapSource(PcapOptions options, RecordSink& sink, PcapHandle pcap, std::uint32_t link_type,
             bool nano)
      : options_(std::move(options)),
        live_(!options_.interface.empty()),
        realtime_(!live_ && options_.replay == Replay::kRealtime),
        sink_(sink),
        pcap_(std::move(pcap)),
        link_type_(link_type),
        nano_(nano),
        log_(captureLogger()) {}

  ~PcapSource() override { stop(); }
  PcapSource(const PcapSource&) = delete;
  PcapSource& operator=(const PcapSource&) = delete;

  [[nodiscard]] const std::string& name() const override { return options_.name; }

  Status start() override {
    std::lock_guard lk(lifecycle_mu_);
    if (stopped_) return inputError(ErrorCode::kClosed, options_.name, "already stopped");
    if (started_) return inputError(ErrorCode::kInvalidArgument, options_.name, "already started");
    try {
      thread_ = std::thread([this] { run(); });
    } catch (const std::system_error& e) {
      return inputError(ErrorCode::kIo, options_.name,
                        fmt::format("cannot start the capture thread: {}", e.what()), true);
    }
    started_ = true;
    return ok();
  }

  void stop() override {
    std::lock_guard lk(lifecycle_mu_);
    if (stopped_) return;
    stopped_ = true;
    {
      // Taking the mutex orders the flag before a sleeping replay re-checks its predicate.
      std::lock_guard sl(sleep_mu_);
      stop_requested_.store(true);
    }
    sleep_cv_.notify_all();
    if (thread_.joinable()) {
      pcap_breakloop(pcap_.get());
      thread_.join();
      if (live_) updateKernelStats();
    }
    pcap_.reset();  // frees the kernel ring now rather than at destruction
  }

  [[nodiscard]] bool finished() const override { return finished_.load(); }

  [[nodiscard]] std::vector<Counter> counters() const override {
    Totals t;
    {
      std::lock_guard lk(counters_mu_);
      t = totals_;
    }
    const bool ifdrop_known = !live_ || (kPlatformReportsIfdrop && options_.interface != "any");
    return {
        {"packets_received", t.received, true},
        {"packets_captured", t.captured, true},
        {"packets_dropped_kernel", t.dropped_kernel, true},
        {"packets_dropped_interface", t.dropped_interface, ifdrop_known},
        {"packets_dropped_agent", t.dropped_agent, true},
        {"packets_stored", t.stored, true},
        {"bytes_captured", t.bytes, true},
        {"file_errors", t.file_errors, true},
    };
  }

 private:
  static void onPacket(u_char* user, const pcap_pkthdr* header, const u_char* bytes) {
    reinterpret_cast<PcapSource*>(user)->handlePacket(*header, bytes);
  }

  [[nodiscard]] Wait waitMode() const { return live_ || realtime_ ? Wait::kNo : Wait::kYes; }

  void run() {
    pthread_setname_np(pthread_self(), "cistern-pcap");
    if (live_) {
      runLive();
    } else {
      runFile();
    }
  }

  void runLive() {
    last_stats_ = Clock::now() - kStatsInterval;
    bool failing = false;
    while (!stop_requested_.load()) {
      const int n = pcap_dispatch(pcap_.get(), static_cast<int>(kBatchPackets), &onPacket,
                                  reinterpret_cast<u_char*>(this));
      flush();
      if (n == PCAP_ERROR) {
        // Logged once per failure spell: the handle keeps failing while the interface is down.
        if (!failing) {
          log_->error("input={} interface={} event=capture_error error=\"{}\" retry_in=1s",
                      options_.name, options_.interface, pcap_geterr(pcap_.get()));
        }
        failing = true;
        sleepUntil(Clock::now() + kLiveErrorBackoff);
        continue;
      }
      if (n > 0 && failing) {
        log_->info("input={} interface={} event=capture_resumed", options_.name,
                   options_.interface);
        failing = false;
      }
      if (Clock::now() - last_stats_ >= kStatsInterval) updateKernelStats();
    }
  }

  void runFile() {
    while (!stop_requested_.load() && !sink_closed_) {
      const int n = pcap_dispatch(pcap_.get(), static_cast<int>(kBatchPackets), &onPacket,
                                  reinterpret_cast<u_char*>(this));
      // Packets read before an error are kept: libpcap already handed them to the callback.
      flush();
      if (n == PCAP_ERROR_BREAK) break;
      if (n == PCAP_ERROR) {
        std::uint64_t read = 0;
        {
          std::lock_guard lk(counters_mu_);
          totals_.file_errors = 1;
          read = totals_.received;
        }
        log_->error("input={} file={} event=file_error packets_read={} error=\"{}\"", options_.name,
                    options_.file, read, pcap_geterr(pcap_.get()));
        finished_.store(true);
        return;
      }
      if (n == 0) {
        log_->info("input={} file={} event=file_done", options_.name, options_.file);
        finished_.store(true);
        return;
      }
    }
    // A closed sink ends the replay like an error would: nothing more can be stored.
    if (sink_closed_) finished_.store(true);
  }

  void handlePacket(const pcap_pkthdr& header, const u_char* bytes) {
    // A live packet is already out of the kernel ring: it is handed over (or counted) even
    // during stop(). A file simply stops being read.
    if (!live_ && (stop_requested_.load() || sink_closed_)) {
      pcap_breakloop(pcap_.get());
      return;
    }
    const std::uint64_t ts = timestampNs(header.ts.tv_sec, header.ts.tv_usec, nano_);
    if (realtime_ && !pace(ts)) {
      pcap_breakloop(pcap_.get());
      return;
    }
    const std::uint32_t caplen = std::min(header.caplen, options_.snaplen);
    // A damaged file may claim an original length below the captured one; consumers (pcap
    // export) rely on original >= captured.
    const std::uint32_t original = std::max(header.len, caplen);
    // Consecutive packets mostly share their length: the metadata is encoded again only when
    // it changes.
    if (meta_scratch_.empty() || original != meta_original_) {
      encodePacketMeta(PacketMeta{link_type_, original}, meta_scratch_);
      meta_original_ = original;
    }
    if (!batch_.add(ts, meta_scratch_,
                    std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes), caplen)))
        [[unlikely]] {
      // Only a bad input name can refuse a packet (the snaplen caps the rest): counted as
      // captured and dropped in the agent.
      std::lock_guard lk(counters_mu_);
      ++totals_.captured;
      if (!live_) ++totals_.received;
      ++totals_.dropped_agent;
      return;
    }
    if (batch_.size() >= kBatchPackets || batch_.bytes() >= kBatchBytes) flush();
  }

  // Realtime replay: waits until the packet is due relative to the first one. False on stop.
  bool pace(std::uint64_t ts) {
    const auto now = Clock::now();
    if (!paced_) {
      paced_ = true;
      replay_start_ = now;
      first_ts_ = ts;
      return true;
    }
    if (ts <= first_ts_) return true;  // out-of-order timestamps are sent at once
    const auto due = replay_start_ + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                         std::min(ts - first_ts_, kMaxReplayGapNs)));
    if (due <= now) return true;
    // What is due now must not wait behind a long gap.
    flush();
    return sleepUntil(due);
  }

  // Sleeps until `deadline` or stop(); false when stopped.
  bool sleepUntil(Clock::time_point deadline) {
    std::unique_lock lk(sleep_mu_);
    return !sleep_cv_.wait_until(lk, deadline, [this] { return stop_requested_.load(); });
  }

  // Hands the batch to the sink. Live and realtime never wait: a full sink costs the batch,
  // counted, so that the kernel ring keeps draining.
  void flush() {
    if (batch_.empty()) return;
    const auto n = static_cast<std::uint64_t>(batch_.size());
    const std::uint64_t payload = batch_.payloadBytes();
    auto appended = sink_.appendBatch(batch_, {}, waitMode());
    batch_.clear();
    {
      std::lock_guard lk(counters_mu_);
      totals_.captured += n;
      if (!live_) totals_.received += n;
      if (appended) {
        totals_.stored += n;
        totals_.bytes += payload;
      } else {
        totals_.dropped_agent += n;
      }
    }
    if (appended) {
      if (sink_full_) {
        log_->info("input={} event=sink_recovered dropped={}", options_.name, dropped_while_full_);
        sink_full_ = false;
        dropped_while_full_ = 0;
      }
      return;
    }
    const Error& e = appended.error();
    if (e.code == ErrorCode::kFull) {
      dropped_while_full_ += n;
      const auto now = Clock::now();
      if (!sink_full_ && (!last_full_log_ || now - *last_full_log_ >= kSinkFullLogInterval)) {
        log_->warn("input={} event=sink_full action=dropping", options_.name);
        last_full_log_ = now;
      }
      sink_full_ = true;
      return;
    }
    if (e.code == ErrorCode::kClosed) {
      if (!sink_closed_) log_->warn("input={} event=sink_closed", options_.name);
      // Live capture keeps draining the kernel ring and counting; a file stops reading.
      sink_closed_ = true;
      return;
    }
    log_->error("input={} event=append_failed dropped={} error=\"{}\"", options_.name, n,
                e.describe());
  }

  // Reads libpcap's cumulative kernel counters (32-bit, wrapping) into the 64-bit totals.
  void updateKernelStats() {
    last_stats_ = Clock::now();
    pcap_stat ps{};
    if (pcap_stats(pcap_.get(), &ps) != 0) {
      if (!stats_error_logged_) {
        log_->warn("input={} event=stats_failed error=\"{}\"", options_.name,
                   pcap_geterr(pcap_.get()));
        stats_error_logged_ = true;
      }
      return;
    }
    const std::uint64_t recv = recv_.update(ps.ps_recv);
    const std::uint64_t drop = drop_.update(ps.ps_drop);
    const std::uint64_t ifdrop = ifdrop_.update(ps.ps_ifdrop);
    std::lock_guard lk(counters_mu_);
    totals_.received = recv;
    totals_.dropped_kernel = drop;
    totals_.dropped_interface = ifdrop;
  }

  const PcapOptions options_;
  const bool live_;
  const bool realtime_;
  RecordSink& sink_;
  PcapHandle pcap_;
  const std::uint32_t link_type_;
  const bool nano_;
  std::shared_ptr<spdlog::logger> log_;

  std::mutex lifecycle_mu_;  // start() and stop()
  bool started_ = false;
  bool stopped_ = false;
  std::thread thread_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> finished_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;

  // The capture thread's (and stop()'s once it has joined).
  RecordBatch batch_{RecordKind::kPacket, options_.name};  // libpcap reuses its buffers
  std::vector<std::byte> meta_scratch_;                    // PacketMeta of the last packet
  std::uint32_t meta_original_ = 0;                        // its original length
  bool paced_ = false;
  Clock::time_point replay_start_;
  std::uint64_t first_ts_ = 0;
  Clock::time_point last_stats_;
  Wrapped32 recv_;
  Wrapped32 drop_;
  Wrapped32 ifdrop_;
  bool stats_error_logged_ = false;
  bool sink_full_ = false;
  bool sink_closed_ = false;
  std::uint64_t dropped_while_full_ = 0;
  std::optional<Clock::time_point> last_full_log_;

  mutable std::mutex counters_mu_;
  Totals totals_;
};

Status checkOptions(const PcapOptions& o) {
  if (auto st = checkInputName(o.name); !st) return st;
  if (o.interface.empty() == o.file.empty()) {
    return inputError(ErrorCode::kConfig, o.name,
                      "a pcap input needs exactly one of 'interface' and 'file'");
  }
  if (o.snaplen == 0 || o.snaplen > kMaxSnaplen) {
    return inputError(ErrorCode::kConfig, o.name,
                      fmt::format("snaplen {} is outside 1..{}", o.snaplen, kMaxSnaplen));
  }
  if (!o.interface.empty()) {
    if (o.buffer_size == 0 || o.buffer_size > static_cast<std::uint64_t>(INT_MAX)) {
      return inputError(ErrorCode::kConfig, o.name,
                        fmt::format("buffer_size {} is outside 1..{} bytes", o.buffer_size,
                                    static_cast<std::uint64_t>(INT_MAX)));
    }
    if (o.block_timeout < 1ms || o.block_timeout > std::chrono::milliseconds(INT_MAX)) {
      return inputError(ErrorCode::kConfig, o.name,
                        "block_timeout must be at least 1ms and below 24 days");
    }
  }
  return ok();
}

Result<PcapHandle> openLive(const PcapOptions& o) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  PcapHandle p(pcap_create(o.interface.c_str(), errbuf));
  if (!p) {
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot open interface '{}': {}", o.interface, errbuf));
  }
  // Rounded up: a sub-millisecond timeout must not become 0, which libpcap takes as "forever".
  const auto timeout_ms = std::chrono::ceil<std::chrono::milliseconds>(o.block_timeout).count();
  pcap_set_snaplen(p.get(), static_cast<int>(o.snaplen));
  pcap_set_promisc(p.get(), o.promiscuous ? 1 : 0);
  pcap_set_buffer_size(p.get(), static_cast<int>(o.buffer_size));
  pcap_set_timeout(p.get(), static_cast<int>(timeout_ms));
  // Immediate mode would make libpcap fall back from TPACKET_V3 to one wakeup per packet.
  pcap_set_immediate_mode(p.get(), 0);
  // Not every platform or driver offers nanoseconds; then timestamps are micro, converted.
  pcap_set_tstamp_precision(p.get(), PCAP_TSTAMP_PRECISION_NANO);

  const int rc = pcap_activate(p.get());
  if (rc < 0) {
    const std::string text = pcapText(p.get(), rc);
    switch (rc) {
      case PCAP_ERROR_NO_SUCH_DEVICE:
        return inputError(ErrorCode::kConfig, o.name,
                          fmt::format("no such interface '{}' ({})", o.interface, text));
      case PCAP_ERROR_PERM_DENIED:
      case PCAP_ERROR_PROMISC_PERM_DENIED:
        return inputError(ErrorCode::kUnsupported, o.name,
                          fmt::format("permission to capture on '{}' denied (capturing needs "
                                      "root or CAP_NET_RAW): {}",
                                      o.interface, text));
      case PCAP_ERROR_IFACE_NOT_UP:
        return inputError(ErrorCode::kConfig, o.name,
                          fmt::format("interface '{}' is not up: {}", o.interface, text), true);
      case PCAP_ERROR_RFMON_NOTSUP:
        return inputError(ErrorCode::kUnsupported, o.name,
                          fmt::format("interface '{}': {}", o.interface, text));
      default:
        return inputError(ErrorCode::kIo, o.name,
                          fmt::format("cannot capture on '{}': {}", o.interface, text));
    }
  }
  if (rc > 0) {
    captureLogger()->warn("input={} interface={} event=activate_warning warning=\"{}\"", o.name,
                          o.interface, pcapText(p.get(), rc));
  }
  return p;
}

Result<PcapHandle> openFile(const PcapOptions& o) {
  struct stat st {};
  if (::stat(o.file.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return inputError(ErrorCode::kNotFound, o.name,
                        fmt::format("file '{}' does not exist", o.file));
    }
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot read file '{}': {}", o.file, std::strerror(err)));
  }
  if (S_ISDIR(st.st_mode)) {
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot read file '{}': it is a directory", o.file));
  }
  // libpcap reads a file with two fread(3) calls per packet. A large stdio buffer saves most of
  // the read(2) calls, and since only the capture thread reads the stream, stdio's lock per
  // call is left out.
  std::FILE* fp = std::fopen(o.file.c_str(), "rbe");
  if (fp == nullptr) {
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot read file '{}': {}", o.file, std::strerror(errno)));
  }
  std::setvbuf(fp, nullptr, _IOFBF, kFileReadBuffer);
#ifdef __GLIBC__
  __fsetlocking(fp, FSETLOCKING_BYCALLER);
#endif
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  PcapHandle p(pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!p) {
    std::fclose(fp);  // pcap_close() owns it only once the handle exists
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot read pcap file '{}': {}", o.file, errbuf));
  }
  return p;
}

Status installFilter(const PcapOptions& o, pcap_t* p) {
  if (o.filter.empty()) return ok();
  bpf_u_int32 net = 0;
  bpf_u_int32 mask = PCAP_NETMASK_UNKNOWN;
  // The netmask only matters to "ip broadcast"; an interface without IPv4 has none.
  if (!o.interface.empty() && o.interface != "any") {
    char errbuf[PCAP_ERRBUF_SIZE] = {};
    if (pcap_lookupnet(o.interface.c_str(), &net, &mask, errbuf) != 0) {
      mask = PCAP_NETMASK_UNKNOWN;
    }
  }
  bpf_program program{};
  if (pcap_compile(p, &program, o.filter.c_str(), 1, mask) != 0) {
    return inputError(ErrorCode::kConfig, o.name,
                      fmt::format("filter '{}': {}", o.filter, pcap_geterr(p)));
  }
  const int rc = pcap_setfilter(p, &program);
  pcap_freecode(&program);
  if (rc != 0) {
    return inputError(ErrorCode::kIo, o.name,
                      fmt::format("cannot install filter '{}': {}", o.filter, pcap_geterr(p)));
  }
  return ok();
}

}  // namespace

Result<std::unique_ptr<Source>> makePcapSource(const PcapOptions& options, RecordSink& sink) {
  if (auto st = checkOptions(options); !st) return tl::unexpected(st.error());
  const bool live = !options.interface.empty();
  auto pcap = live ? openLive(options) : openFile(options);
  if (!pcap) return tl::unexpected(pcap.error());
  pcap_t* p = pcap->get();

  const int dlt = pcap_datalink(p);
  const int link_type = linkTypeOfDlt(dlt);
  if (link_type < 0) {
    return inputError(ErrorCode::kConfig, options.name,
                      fmt::format("unsupported link type {}: {}", dlt, pcap_geterr(p)));
  }
  if (auto st = installFilter(options, p); !st) return tl::unexpected(st.error());

  const bool nano = pcap_get_tstamp_precision(p) == PCAP_TSTAMP_PRECISION_NANO;
  const char* dlt_name = pcap_datalink_val_to_name(dlt);
  captureLogger()->info("input={} {}={} link_type={} ({}) timestamps={}", options.name,
                        live ? "interface" : "file", live ? options.interface : options.file,
                        link_type, dlt_name != nullptr ? dlt_name : "unknown", nano ? "ns" : "us");
  return std::make_unique<PcapSource>(options, sink, std::move(*pcap),
                                      static_cast<std::uint32_t>(link_type), nano);
}

}  // namespace cistern::capture
