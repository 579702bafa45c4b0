// Shared by the fault tests and the crash child: the records they write and the child's protocol.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "cistern/buffer/options.h"
#include "cistern/core/bytes.h"

namespace cistern::testing::fault {

// Payloads use the convention of ring_test_util.h (appendSeq/seqsOf): the first 8 bytes hold the
// sequence number little-endian, every other byte is seq & 0x7f, and the record's timestamp is
// 1e9 + seq, so seqsOf(batch, &intact) checks records written by the child too.
inline constexpr std::uint64_t kTsBase = 1'000'000'000ULL;

inline void fillPayload(std::vector<std::byte>& p, std::uint64_t seq, std::size_t size) {
  p.resize(size < 8 ? 8 : size);
  std::memset(p.data(), static_cast<int>(seq & 0x7fU), p.size());
  bytes::storeLe<std::uint64_t>(p.data(), seq);
}

// The crash child's ring (the tests reopen it with the same options). Large enough that nothing
// is ever evicted during a test; frames spanning several LMDB overflow pages and small ones
// sharing leaf pages both occur.
inline buffer::RingOptions crashRingOptions(const std::filesystem::path& dir,
                                            buffer::SyncMode sync) {
  using namespace std::chrono_literals;
  buffer::RingOptions o;
  o.dir = dir;
  o.sync = sync;
  o.max_size = 256ULL << 20U;
  o.commit_interval = 5ms;
  o.commit_max_bytes = 256U << 10U;
  o.frame_max_bytes = 16U << 10U;
  o.ingest_max_bytes = 1U << 20U;
  return o;
}

// The state key the child commits with every append: the last sequence number of that append.
inline constexpr std::string_view kLastSeqKey = "crash/last_seq";

// The child's stdout protocol, one line per event, written with write(2) after the event:
//   C <seq> <frame>         a commit returned; every record up to <seq> is committed and the
//                           highest frame id committed by this process is <frame> (0: none yet)
//   a <frame> <first> <last>  about to acknowledge <frame>, which holds seqs first..last
//   A <frame>               a flush after acknowledging every frame up to <frame> returned
struct ChildLine {
  char kind = 0;
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::uint64_t c = 0;
};

// Parses the complete lines of `text` (a trailing partial line is ignored); false on a malformed
// line.
inline bool parseChildLines(std::string_view text, std::vector<ChildLine>& out) {
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) break;
    const std::string line(text.substr(at, nl - at));
    at = nl + 1;
    ChildLine l;
    unsigned long long x = 0;
    unsigned long long y = 0;
    unsigned long long z = 0;
    char kind = 0;
    const int n = std::sscanf(line.c_str(), "%c %llu %llu %llu", &kind, &x, &y, &z);
    l.kind = kind;
    l.a = x;
    l.b = y;
    l.c = z;
    const bool good = (kind == 'C' && n == 3) || (kind == 'a' && n == 4) || (kind == 'A' && n == 2);
    if (!good) return false;
    out.push_back(l);
  }
  return true;
}

}  // namespace cistern::testing::fault
