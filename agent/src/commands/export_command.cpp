// `cistern buffer export`: the buffered records as pcapng (packets) or NDJSON (every kind),
// without consuming them. The ring is opened read-only, so this runs beside an agent; records are
// read in frame order with short read transactions and written as they are read, so memory stays
// flat whatever the backlog.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "buffer_access.h"
#include "cistern/agent/commands.h"
#include "cistern/core/pcapng.h"
#include "cistern/core/record.h"
#include "cistern/core/record_json.h"
#include "cistern/core/record_meta.h"

namespace cistern::agent {
namespace {

struct ExportCounts {
  std::uint64_t frames = 0;
  std::uint64_t written = 0;
  std::uint64_t other_input = 0;  // --input given and the record is another input's
  std::uint64_t not_packets = 0;  // pcapng: log and syslog records are left out
  std::uint64_t bad_records = 0;  // metadata that does not decode, malformed frame bodies
};

class Output {
 public:
  explicit Output(std::FILE* file) : file_(file) {}
  bool write(const void* data, std::size_t n) {
    if (n == 0) return true;
    if (std::fwrite(data, 1, n, file_) != n) {
      error_ = errno;
      return false;
    }
    return true;
  }
  bool write(const std::vector<std::byte>& b) { return write(b.data(), b.size()); }
  [[nodiscard]] int error() const { return error_; }

 private:
  std::FILE* file_;
  int error_ = 0;
};

}  // namespace

int bufferExportCommand(const ExportOptions& options, std::FILE* out, std::FILE* err) {
  auto ring = openRingReadOnly(options.data_dir);
  if (!ring) {
    fmt::print(err, "cannot export {}: {}\n", options.data_dir.string(), ring.error().message);
    return kExitCannotRun;
  }
  std::FILE* target = out;
  const bool to_file = !options.output.empty() && options.output != "-";
  if (to_file) {
    target = std::fopen(options.output.c_str(), "wbe");
    if (target == nullptr) {
      fmt::print(err, "cannot create {}: {}\n", options.output.string(), std::strerror(errno));
      return kExitCannotRun;
    }
  }
  Output sink(target);
  const bool pcapng = options.format == ExportFormat::kPcapng;
  PcapngEncoder encoder;
  std::vector<std::byte> chunk;
  if (pcapng) encoder.begin(chunk, fmt::format("cistern {}", options.version));

  ExportCounts counts;
  buffer::ReadBatch batch;
  buffer::FrameId next = 0;
  bool write_ok = true;
  int status = kExitOk;
  while (write_ok) {
    auto n = (*ring)->scan(next, batch, {}, &next);
    if (!n) {
      fmt::print(err, "reading the buffer failed: {}\n", n.error().message);
      status = kExitCannotRun;
      break;
    }
    if (*n == 0) break;
    for (const auto& frame : batch.frames()) {
      ++counts.frames;
      RecordReader reader(frame.body);
      while (const RecordView* r = reader.next()) {
        if (!options.input.empty() && r->input != options.input) {
          ++counts.other_input;
          continue;
        }
        if (pcapng) {
          if (r->kind != RecordKind::kPacket) {
            ++counts.not_packets;
            continue;
          }
          auto meta = decodePacketMeta(r->meta);
          if (!meta) {
            ++counts.bad_records;
            continue;
          }
          encoder.packet(chunk, r->input, meta->link_type, r->timestamp_ns, r->payload,
                         meta->original_length);
        } else {
          const std::string line = recordToJson(*r) + "\n";
          const auto* p = reinterpret_cast<const std::byte*>(line.data());
          chunk.insert(chunk.end(), p, p + line.size());
        }
        ++counts.written;
      }
      if (reader.failed()) {
        ++counts.bad_records;
        fmt::print(err, "frame {}: {}\n", frame.id, reader.error());
      }
      if (chunk.size() >= (1U << 20U)) {
        write_ok = sink.write(chunk);
        chunk.clear();
      }
    }
  }
  if (write_ok) write_ok = sink.write(chunk);
  if (write_ok && std::fflush(target) != 0) write_ok = false;
  if (to_file && std::fclose(target) != 0) write_ok = false;
  if (!write_ok) {
    fmt::print(err, "writing the export failed: {}\n",
               std::strerror(sink.error() != 0 ? sink.error() : errno));
    return kExitCannotRun;
  }
  const auto stats = (*ring)->stats();
  fmt::print(err,
             "exported {} records from {} frames as {}; left out: {} of other inputs, {} not "
             "packets, {} damaged; corrupt frames skipped: {}\n",
             counts.written, counts.frames, pcapng ? "pcapng" : "ndjson", counts.other_input,
             counts.not_packets, counts.bad_records, stats.corrupt_frames_seen);
  if (status == kExitOk && (counts.bad_records > 0 || stats.corrupt_frames_seen > 0)) {
    status = kExitCheckFailed;
  }
  return status;
}

}  // namespace cistern::agent
