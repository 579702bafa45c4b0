// ring_crash_child: appends to an LmdbRing until it is killed, reporting on stdout what is
// durable. Run by tests/fault/ring_crash_test.cpp, which kills it with SIGKILL at a random moment
// and then checks that the ring holds everything reported.
//
//   ring_crash_child <dir> <batch|always|none> <first_seq> <seed> [ack]
//
// Records carry increasing sequence numbers from <first_seq> (payload layout in fault_util.h);
// every append commits the state key "crash/last_seq" with it. With "ack", a consumer thread
// named "out" reads, acknowledges and flushes as it goes. The protocol is in fault_util.h.
// Exit codes: 2 usage, 3 ring error, 4 the ring handed out something unexpected.
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cistern/buffer/ring.h"
#include "cistern/core/record.h"
#include "fault_util.h"

namespace {

using cistern::buffer::CommitInfo;
using cistern::buffer::FrameId;
using cistern::buffer::LmdbRing;
using cistern::buffer::ReadBatch;
using cistern::buffer::RingOptions;
using cistern::buffer::SyncMode;
using cistern::buffer::Ticket;
using cistern::testing::fault::fillPayload;
using cistern::testing::fault::kLastSeqKey;
using cistern::testing::fault::kTsBase;
using namespace std::chrono_literals;

// Several appends in flight, so commits carry more than one and a kill can land between an
// append and its commit.
constexpr Ticket kWindow = 8;
// At most this many record bytes per second, so that however fast the disk, a test's runs stay
// far below the ring's max_size (nothing may be evicted) and cost little disk. Acknowledged
// frames are deleted, so the acknowledging variant may go faster and keep its consumer busy.
constexpr double kMaxBytesPerSecond = 8.0 * 1024 * 1024;
constexpr double kMaxBytesPerSecondAck = 512.0 * 1024 * 1024;

// One line with write(2): no stdio buffer can hold back or lose a line when SIGKILL arrives.
void emit(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void emit(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  std::size_t left = std::min(static_cast<std::size_t>(n), sizeof buf - 1);
  const char* p = buf;
  while (left > 0) {
    const ssize_t w = ::write(1, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) std::_Exit(3);
    p += w;
    left -= static_cast<std::size_t>(w);
  }
}

[[noreturn]] void die(int code, const std::string& why) {
  std::fprintf(stderr, "ring_crash_child: %s\n", why.c_str());
  std::_Exit(code);
}

// Reads, checks and acknowledges as an output would; prints before acknowledging and after the
// flush that makes the acknowledgements durable.
void consume(LmdbRing& ring, cistern::buffer::Consumer& out) {
  ReadBatch batch;
  std::uint64_t expect = 0;  // next seq; 0 until the first frame (which may be a redelivery)
  bool started = false;
  std::vector<FrameId> ids;
  for (;;) {
    auto n = out.readNext(batch, {16, 1U << 20U});
    if (!n) die(3, "readNext: " + n.error().describe());
    if (*n == 0) {
      std::this_thread::sleep_for(1ms);
      continue;
    }
    if (batch.corruptSkipped() != 0) die(4, "corrupt frame");
    ids.clear();
    for (const auto& f : batch.frames()) {
      cistern::RecordReader reader(f.body);
      std::uint64_t first = 0;
      std::uint64_t last = 0;
      std::uint32_t count = 0;
      while (const auto* r = reader.next()) {
        const auto seq = cistern::bytes::loadLe<std::uint64_t>(r->payload.data());
        if (started && seq != expect) {
          die(4, "frame " + std::to_string(f.id) + " holds seq " + std::to_string(seq) +
                     ", expected " + std::to_string(expect));
        }
        if (count == 0) first = seq;
        last = seq;
        started = true;
        expect = seq + 1;
        ++count;
      }
      if (reader.failed() || count != f.record_count) die(4, "malformed frame");
      emit("a %llu %llu %llu\n", static_cast<unsigned long long>(f.id),
           static_cast<unsigned long long>(first), static_cast<unsigned long long>(last));
      ids.push_back(f.id);
    }
    out.ack(ids);
    if (auto s = ring.flush(30s); !s) die(3, "flush: " + s.error().describe());
    emit("A %llu\n", static_cast<unsigned long long>(ids.back()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: %s <dir> <batch|always|none> <first_seq> <seed> [ack]\n", argv[0]);
    return 2;
  }
  // Never outlive the test that runs us.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) return 2;

  const std::string mode = argv[2];
  SyncMode sync = SyncMode::kBatch;
  if (mode == "always") {
    sync = SyncMode::kAlways;
  } else if (mode == "none") {
    sync = SyncMode::kNone;
  } else if (mode != "batch") {
    return 2;
  }
  std::uint64_t seq = std::strtoull(argv[3], nullptr, 10);
  std::mt19937_64 rng(std::strtoull(argv[4], nullptr, 10));
  const bool ack = argc == 6 && std::string(argv[5]) == "ack";

  const RingOptions o = cistern::testing::fault::crashRingOptions(argv[1], sync);
  auto opened = LmdbRing::open(o);
  if (!opened) die(3, "open: " + opened.error().describe());
  LmdbRing& ring = **opened;

  // Ticket -> last seq of that append. Registered before append() so the listener, which may run
  // before append() returns, always finds it. Tickets count append() calls from 1.
  std::mutex mu;
  std::map<Ticket, std::uint64_t> last_seq_of;
  std::uint64_t reported_seq = UINT64_MAX;
  FrameId highest_frame = 0;
  FrameId reported_frame = 0;
  bool any_committed = false;
  std::uint64_t committed_seq = 0;
  ring.setCommitListener([&](const CommitInfo& c) {
    std::lock_guard lk(mu);
    for (auto it = last_seq_of.begin(); it != last_seq_of.end() && it->first <= c.ticket;) {
      committed_seq = it->second;
      any_committed = true;
      it = last_seq_of.erase(it);
    }
    highest_frame = std::max(highest_frame, c.last_frame);
    if (any_committed && (committed_seq != reported_seq || highest_frame != reported_frame)) {
      reported_seq = committed_seq;
      reported_frame = highest_frame;
      emit("C %llu %llu\n", static_cast<unsigned long long>(committed_seq),
           static_cast<unsigned long long>(highest_frame));
    }
  });

  std::thread consumer;
  if (ack) {
    auto out = ring.consumer("out");
    if (!out) die(3, "consumer: " + out.error().describe());
    consumer = std::thread([&ring, c = *out] { consume(ring, *c); });
    consumer.detach();  // runs until the process is killed
  }

  std::vector<std::vector<std::byte>> payloads(32);
  std::vector<cistern::RecordInput> records;
  std::vector<cistern::buffer::StateWrite> state(1);
  state[0].key = std::string(kLastSeqKey);
  const double rate = ack ? kMaxBytesPerSecondAck : kMaxBytesPerSecond;
  const auto start = std::chrono::steady_clock::now();
  double appended_bytes = 0;
  for (Ticket expected = 1;; ++expected) {
    const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(appended_bytes / rate));
    std::this_thread::sleep_until(due);
    // 1..32 records of 8..1500 bytes; now and then one larger than a frame, stored alone.
    const std::size_t n = 1 + rng() % 32;
    records.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t size = rng() % 100 == 0 ? 20'000 + rng() % 20'000 : 8 + rng() % 1500;
      fillPayload(payloads[i], seq + i, size);
      appended_bytes += static_cast<double>(size);
      records.push_back(cistern::RecordInput{
          cistern::RecordKind::kTest, kTsBase + seq + i, "crash", {}, payloads[i]});
    }
    const std::uint64_t last = seq + n - 1;
    state[0].value = std::to_string(last);
    {
      std::lock_guard lk(mu);
      last_seq_of[expected] = last;
    }
    auto ticket = ring.append(records, state, cistern::buffer::Wait::kYes);
    if (!ticket) die(3, "append: " + ticket.error().describe());
    if (*ticket != expected) die(4, "unexpected ticket " + std::to_string(*ticket));
    seq = last + 1;
    if (*ticket > kWindow) {
      if (auto s = ring.waitCommitted(*ticket - kWindow, 30s); !s) {
        die(3, "waitCommitted: " + s.error().describe());
      }
    }
  }
}
