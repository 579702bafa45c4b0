// OtlpMock: a real OTLP/HTTP receiver for component tests, @elastic/mockotlpserver run by
// tests/peers/otlp_mock.js on a free loopback port (the OS picks it: no races between parallel
// tests). It decodes every request with protobufjs, an implementation independent of ours, and
// prints it as JSON; a reader thread collects what it prints, so the mock never blocks on a full
// pipe, and the test reads the decoded log records.
//
//   OtlpMock mock;                        // starts it; bounded wait until it listens
//   REQUIRE(mock.error().empty());        // node or the npm package missing: says what to run
//   ... POST to mock.url() + "/v1/logs" ...
//   REQUIRE(mock.waitForRecords(10));
//   auto records = mock.records();
//
// The mock is stopped (SIGTERM, then SIGKILL) by stop() or the destructor, and exits by itself
// when the test process dies. Needs node in PATH (scripts/bootstrap.sh) and the package installed
// in tests/peers (scripts/peers.sh).
#pragma once

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "subprocess.h"

namespace cistern::testing {

// One decoded LogRecord, with the attributes of the resource it came in.
struct OtlpLogRecord {
  std::uint64_t time_unix_nano = 0;  // 0 when absent
  std::uint64_t observed_time_unix_nano = 0;
  int severity_number = 0;
  std::string severity_text;
  bool body_is_bytes = false;
  std::string body;  // string_value, or bytes_value decoded
  // key -> OTLP/JSON AnyValue ({"stringValue": "x"}, {"intValue": "42"}, {"boolValue": true},
  // {"bytesValue": "<base64>"}), as protobufjs prints them.
  std::map<std::string, nlohmann::json> attributes;
  std::map<std::string, nlohmann::json> resource;

  [[nodiscard]] bool has(const std::string& key) const { return attributes.count(key) != 0; }
  // A string attribute, or a bytes one decoded; "" when absent.
  [[nodiscard]] std::string text(const std::string& key) const { return textOf(attributes, key); }
  // An int attribute; -1 when absent.
  [[nodiscard]] std::int64_t integer(const std::string& key) const {
    return integerOf(attributes, key);
  }
  [[nodiscard]] bool flag(const std::string& key) const {
    const auto it = attributes.find(key);
    return it != attributes.end() && it->second.value("boolValue", false);
  }
  [[nodiscard]] std::string resourceText(const std::string& key) const {
    return textOf(resource, key);
  }
  [[nodiscard]] std::int64_t resourceInteger(const std::string& key) const {
    return integerOf(resource, key);
  }

  static std::string base64Decode(const std::string& in) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (const char ch : in) {
      int v = -1;
      if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
      if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
      if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
      if (ch == '+' || ch == '-') v = 62;
      if (ch == '/' || ch == '_') v = 63;
      if (v < 0) continue;  // padding
      acc = (acc << 6U) | static_cast<std::uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += static_cast<char>((acc >> static_cast<unsigned>(bits)) & 0xffU);
      }
    }
    return out;
  }

 private:
  static std::string textOf(const std::map<std::string, nlohmann::json>& m,
                            const std::string& key) {
    const auto it = m.find(key);
    if (it == m.end()) return {};
    if (it->second.contains("stringValue")) return it->second["stringValue"].get<std::string>();
    if (it->second.contains("bytesValue")) {
      return base64Decode(it->second["bytesValue"].get<std::string>());
    }
    return {};
  }
  static std::int64_t integerOf(const std::map<std::string, nlohmann::json>& m,
                                const std::string& key) {
    const auto it = m.find(key);
    if (it == m.end() || !it->second.contains("intValue")) return -1;
    const auto& v = it->second["intValue"];
    return v.is_string() ? std::stoll(v.get<std::string>()) : v.get<std::int64_t>();
  }
};

// One HTTP request as the mock saw it (before decoding).
struct OtlpMockRequest {
  std::string method;
  std::string path;
  nlohmann::json headers;  // lower-case names
  int status = 0;          // what the mock answered
};

class OtlpMock {
 public:
  // `fail`: "COUNT:STATUS[:RETRY_AFTER_S]" answers the first COUNT requests with STATUS.
  explicit OtlpMock(const std::string& fail = {},
                    std::chrono::milliseconds start_timeout = std::chrono::seconds(20)) {
    const std::string peers = std::string(CISTERN_SOURCE_DIR) + "/tests/peers";
    const std::string node = findNode();
    if (node.empty()) {
      error_ = "node is not installed (no node or nodejs in PATH): run scripts/bootstrap.sh";
      return;
    }
    if (!std::filesystem::exists(peers + "/node_modules/@elastic/mockotlpserver/package.json")) {
      error_ = "@elastic/mockotlpserver is not installed in " + peers +
               "/node_modules: run scripts/peers.sh";
      return;
    }
    std::vector<std::string> argv = {node, peers + "/otlp_mock.js", "--host", "127.0.0.1", "--port",
                                     "0"};
    if (!fail.empty()) {
      argv.emplace_back("--fail");
      argv.push_back(fail);
    }
    child_ = std::make_unique<Child>(argv);
    reader_ = std::thread([this] { readLoop(); });
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, start_timeout, [&] { return !url_.empty() || exited_; })) {
      error_ = "the OTLP mock did not start listening within " +
               std::to_string(start_timeout.count()) + " ms; stderr: " + err_;
    } else if (url_.empty()) {
      error_ = "the OTLP mock exited at start; stderr: " + err_ + " stdout: " + startup_out_;
    }
  }
  ~OtlpMock() { stop(); }
  OtlpMock(const OtlpMock&) = delete;
  OtlpMock& operator=(const OtlpMock&) = delete;

  // Empty when the mock is listening; otherwise what went wrong and what to run.
  [[nodiscard]] std::string error() const {
    std::lock_guard lk(mu_);
    return error_;
  }
  // "http://127.0.0.1:<port>", no trailing slash.
  [[nodiscard]] std::string url() const {
    std::lock_guard lk(mu_);
    return url_;
  }

  // Waits until at least `n` log records (or `n` HTTP requests) arrived; false on timeout.
  bool waitForRecords(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return records_.size() >= n || exited_; }) &&
           records_.size() >= n;
  }
  bool waitForRequests(std::size_t n,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return requests_.size() >= n || exited_; }) &&
           requests_.size() >= n;
  }

  // Every log record decoded so far, in arrival order.
  [[nodiscard]] std::vector<OtlpLogRecord> records() const {
    std::lock_guard lk(mu_);
    return records_;
  }
  // Every decoded ExportLogsServiceRequest (protobufjs toObject form).
  [[nodiscard]] std::vector<nlohmann::json> logRequests() const {
    std::lock_guard lk(mu_);
    return log_requests_;
  }
  [[nodiscard]] std::vector<OtlpMockRequest> requests() const {
    std::lock_guard lk(mu_);
    return requests_;
  }
  // Lines the mock printed that are not events (should stay empty), and its stderr.
  [[nodiscard]] std::string diagnostics() const {
    std::lock_guard lk(mu_);
    return "errors: " + errors_ + " stderr: " + err_;
  }

  // Stops the mock: SIGTERM, SIGKILL after 5 s. Idempotent.
  void stop() {
    if (!child_) return;
    child_->kill(SIGTERM);
    {
      std::unique_lock lk(mu_);
      if (!cv_.wait_for(lk, std::chrono::seconds(5), [&] { return exited_; })) {
        child_->kill(SIGKILL);
      }
    }
    if (reader_.joinable()) reader_.join();
    child_->wait();
    child_.reset();
  }

 private:
  static std::string findNode() {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      for (const char* name : {"node", "nodejs"}) {
        const std::string candidate = dir + "/" + name;
        if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
      }
    }
    return {};
  }

  // The reader thread: the only user of child_ until stop() joins it.
  void readLoop() {
    std::size_t err_seen = 0;
    for (;;) {
      const bool open = child_->pump(std::chrono::milliseconds(100));
      std::string& out = child_->out();
      std::size_t start = 0;
      for (std::size_t nl = out.find('\n'); nl != std::string::npos; nl = out.find('\n', start)) {
        handleLine(out.substr(start, nl - start));
        start = nl + 1;
      }
      out.erase(0, start);
      {
        std::lock_guard lk(mu_);
        const std::string& err = child_->err();
        err_.append(err, err_seen, std::string::npos);
        err_seen = err.size();
      }
      if (!open) break;
    }
    std::lock_guard lk(mu_);
    exited_ = true;
    cv_.notify_all();
  }

  void handleLine(const std::string& line) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    std::lock_guard lk(mu_);
    if (j.is_discarded() || !j.is_object() || !j.contains("event")) {
      if (url_.empty()) startup_out_ += line + "\n";
      errors_ += "unparsed line: " + line.substr(0, 200) + "\n";
      return;
    }
    const std::string event = j["event"].get<std::string>();
    if (event == "listening") {
      url_ = j["url"].get<std::string>();
    } else if (event == "request") {
      requests_.push_back(OtlpMockRequest{j.value("method", ""), j.value("path", ""),
                                          j.value("headers", nlohmann::json::object()),
                                          j.value("status", 0)});
    } else if (event == "logs") {
      log_requests_.push_back(j["request"]);
      addRecords(j["request"]);
    } else {
      errors_ += j.dump() + "\n";
    }
    cv_.notify_all();
  }

  static std::map<std::string, nlohmann::json> attributeMap(const nlohmann::json& list) {
    std::map<std::string, nlohmann::json> out;
    if (!list.is_array()) return out;
    for (const auto& kv : list) out[kv.value("key", "")] = kv.value("value", nlohmann::json{});
    return out;
  }

  static std::uint64_t nanos(const nlohmann::json& record, const char* key) {
    if (!record.contains(key)) return 0;
    const auto& v = record[key];
    return v.is_string() ? std::stoull(v.get<std::string>()) : v.get<std::uint64_t>();
  }

  void addRecords(const nlohmann::json& request) {
    for (const auto& rl : request.value("resourceLogs", nlohmann::json::array())) {
      const auto resource = attributeMap(
          rl.value("resource", nlohmann::json::object()).value("attributes", nlohmann::json()));
      for (const auto& sl : rl.value("scopeLogs", nlohmann::json::array())) {
        for (const auto& lr : sl.value("logRecords", nlohmann::json::array())) {
          OtlpLogRecord r;
          r.time_unix_nano = nanos(lr, "timeUnixNano");
          r.observed_time_unix_nano = nanos(lr, "observedTimeUnixNano");
          r.severity_number = lr.value("severityNumber", 0);
          r.severity_text = lr.value("severityText", "");
          const auto body = lr.value("body", nlohmann::json::object());
          if (body.contains("bytesValue")) {
            r.body_is_bytes = true;
            r.body = OtlpLogRecord::base64Decode(body["bytesValue"].get<std::string>());
          } else {
            r.body = body.value("stringValue", "");
          }
          r.attributes = attributeMap(lr.value("attributes", nlohmann::json()));
          r.resource = resource;
          records_.push_back(std::move(r));
        }
      }
    }
  }

  std::unique_ptr<Child> child_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string error_;
  std::string url_;
  bool exited_ = false;
  std::string err_;
  std::string errors_;
  std::string startup_out_;
  std::vector<OtlpMockRequest> requests_;
  std::vector<nlohmann::json> log_requests_;
  std::vector<OtlpLogRecord> records_;
};

}  // namespace cistern::testing
