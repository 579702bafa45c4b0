// `cistern buffer inspect` and `cistern buffer verify`: read-only views of a ring on disk. Both
// open the ring read-only, so they are safe beside a running agent.
#include <ctime>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "buffer_access.h"
#include "cistern/agent/commands.h"
#include "cistern/buffer/ring.h"
#include "cistern/core/record_json.h"
#include "cistern/core/units.h"

namespace cistern::agent {

Result<std::unique_ptr<buffer::LmdbRing>> openRingReadOnly(const std::filesystem::path& dir) {
  std::error_code ec;
  buffer::RingOptions ro;
  // An agent data directory (ring under buffer/) or the ring directory itself.
  ro.dir = std::filesystem::exists(bufferDirOf(dir) / "data.mdb", ec) ? bufferDirOf(dir) : dir;
  ro.read_only = true;
  return buffer::LmdbRing::open(ro);
}

nlohmann::json ringStatsJson(const buffer::RingStats& s) {
  return {{"frames", s.frames},
          {"records", s.records},
          {"used_bytes", s.used_bytes},
          {"max_size", s.max_size},
          {"map_size", s.map_size},
          {"file_bytes", s.file_bytes},
          {"oldest_frame", s.oldest_frame},
          {"newest_frame", s.newest_frame},
          {"next_frame", s.next_frame},
          {"oldest_ts_ns", s.oldest_ts},
          {"newest_ts_ns", s.newest_ts},
          {"oldest_time", formatTimestamp(static_cast<std::int64_t>(s.oldest_ts))},
          {"newest_time", formatTimestamp(static_cast<std::int64_t>(s.newest_ts))},
          {"appended_frames", s.appended_frames},
          {"appended_records", s.appended_records},
          {"deleted_frames", s.deleted_frames},
          {"evicted_frames", s.evicted_frames},
          {"evicted_records", s.evicted_records},
          {"commits", s.commits}};
}

namespace {

std::string isoTime(std::uint64_t ns) { return formatTimestamp(static_cast<std::int64_t>(ns)); }

double percent(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

nlohmann::json toJson(const buffer::ConsumerStats& c) {
  return {{"name", c.name},
          {"ack_floor", c.ack_floor},
          {"ack_ranges", c.ack_ranges},
          {"assigned_records", c.assigned_records},
          {"acked_frames", c.acked_frames},
          {"acked_records", c.acked_records},
          {"dropped_unsent_frames", c.evicted_frames},
          {"dropped_unsent_records", c.evicted_records},
          {"corrupt_frames", c.corrupt_frames},
          {"corrupt_records", c.corrupt_records},
          {"pending_frames", c.pending_frames},
          {"pending_records", c.pending_records}};
}

}  // namespace

int bufferInspectCommand(const BufferToolOptions& options, std::FILE* out, std::FILE* err) {
  auto ring = openRingReadOnly(options.data_dir);
  if (!ring) {
    fmt::print(err, "cannot inspect {}: {}\n", options.data_dir.string(), ring.error().message);
    return kExitCannotRun;
  }
  const auto s = (*ring)->stats();
  const auto consumers = (*ring)->consumerStats();
  if (options.json) {
    nlohmann::json j = ringStatsJson(s);
    j["dir"] = (*ring)->options().dir.string();
    j["consumers"] = nlohmann::json::array();
    for (const auto& c : consumers) j["consumers"].push_back(toJson(c));
    fmt::print(out, "{}\n", j.dump(2));
    return kExitOk;
  }
  fmt::print(out, "buffer {}\n", (*ring)->options().dir.string());
  if (s.frames == 0) {
    fmt::print(out, "  frames     0 (next id {})\n", s.next_frame);
  } else {
    fmt::print(out, "  frames     {} (ids {}..{}, next id {})\n", s.frames, s.oldest_frame,
               s.newest_frame, s.next_frame);
  }
  fmt::print(out, "  records    {}\n", s.records);
  fmt::print(out, "  bytes      {} used of {} max_size ({:.1f}%), file {}, map {}\n",
             formatSize(s.used_bytes), formatSize(s.max_size), percent(s.used_bytes, s.max_size),
             formatSize(s.file_bytes), formatSize(s.map_size));
  fmt::print(out, "  oldest     {}\n", isoTime(s.oldest_ts));
  fmt::print(out, "  newest     {}\n", isoTime(s.newest_ts));
  fmt::print(out,
             "  totals     appended {} frames / {} records; deleted {} frames; evicted {} frames "
             "/ {} records; {} commits\n",
             s.appended_frames, s.appended_records, s.deleted_frames, s.evicted_frames,
             s.evicted_records, s.commits);
  fmt::print(out, "consumers    {}\n", consumers.size());
  for (const auto& c : consumers) {
    fmt::print(out, "  {}\n", c.name);
    fmt::print(out, "    cursor   ack floor {}, {} acknowledged range{} above it\n", c.ack_floor,
               c.ack_ranges, c.ack_ranges == 1 ? "" : "s");
    fmt::print(out, "    pending  {} frames / {} records\n", c.pending_frames, c.pending_records);
    fmt::print(out, "    acked    {} frames / {} records\n", c.acked_frames, c.acked_records);
    fmt::print(out, "    dropped  {} frames / {} records evicted unsent\n", c.evicted_frames,
               c.evicted_records);
    fmt::print(out, "    corrupt  {} frames / {} records skipped\n", c.corrupt_frames,
               c.corrupt_records);
    fmt::print(out, "    due      {} records = acked + dropped + corrupt + pending\n",
               c.assigned_records);
  }
  return kExitOk;
}

int bufferVerifyCommand(const BufferToolOptions& options, std::FILE* out, std::FILE* err) {
  auto ring = openRingReadOnly(options.data_dir);
  if (!ring) {
    fmt::print(err, "cannot verify {}: {}\n", options.data_dir.string(), ring.error().message);
    return kExitCannotRun;
  }
  auto report = (*ring)->verify();
  if (!report) {
    fmt::print(err, "verify of {} failed: {}\n", options.data_dir.string(), report.error().message);
    return kExitCannotRun;
  }
  if (options.json) {
    nlohmann::json j = {{"dir", (*ring)->options().dir.string()},
                        {"ok", report->ok()},
                        {"frames_checked", report->frames_checked},
                        {"records_checked", report->records_checked},
                        {"bytes_checked", report->bytes_checked},
                        {"bad_frames", report->bad_frames},
                        {"problems", report->problems}};
    fmt::print(out, "{}\n", j.dump(2));
  } else {
    fmt::print(out, "verified {} frames, {} records, {} in {}\n", report->frames_checked,
               report->records_checked, formatSize(report->bytes_checked),
               (*ring)->options().dir.string());
    for (const auto& p : report->problems) fmt::print(err, "problem: {}\n", p);
    if (!report->bad_frames.empty()) {
      std::string ids;
      for (auto id : report->bad_frames) ids += (ids.empty() ? "" : " ") + std::to_string(id);
      fmt::print(err, "bad frames: {}\n", ids);
    }
    fmt::print(out, "{}\n",
               report->ok() ? "ok" : fmt::format("FAILED: {} problems", report->problems.size()));
  }
  return report->ok() ? kExitOk : kExitCheckFailed;
}

}  // namespace cistern::agent
