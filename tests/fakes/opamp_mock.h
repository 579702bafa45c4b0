// OpampMock: a real OpAMP server for component tests, @elastic/mockopampserver run by
// tests/peers/opamp_mock.js on loopback. It decodes every AgentToServer with @bufbuild/protobuf
// (generated from the published opamp.proto: an implementation independent of ours) and prints
// it with the ServerToAgent it answered; a reader thread collects what it prints, so the mock never
// blocks on a full pipe, and the test reads the decoded messages. A control API (HTTP, same port)
// sets the remote config it offers, asks for the full state, sets the heartbeat interval, and
// makes it fail.
//
//   OpampMock mock;                         // starts it; bounded wait until it listens
//   REQUIRE(mock.error().empty());          // node or the npm package missing: says what to run
//   ... an OpAMP client POSTs to mock.url() ...
//   REQUIRE(mock.waitForMessages(3));
//   auto first = mock.messages()[0].a2s;    // protobuf JSON ("sequenceNum": "1", bytes base64)
//
// The mock is stopped (SIGTERM, then SIGKILL) by stop() or the destructor, and exits by itself
// when the test process dies. Needs node in PATH (scripts/bootstrap.sh) and the package installed
// in tests/peers (scripts/peers.sh). Tests link libcurl (control requests) and mbedTLS (base64).
#pragma once

#include <curl/curl.h>
#include <mbedtls/base64.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "subprocess.h"

namespace cistern::testing {

struct OpampMockOptions {
  // 0: the OS picks a port. A test that stops the server and starts it again on the same port
  // (or starts the client first) passes one from listenPort() (ports.h).
  int port = 0;
  // HTTPS: the server's certificate and key; with request_client_cert, clients must present a
  // certificate signed by ca_file (mutual TLS). Control requests then use client_cert/key.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool request_client_cert = false;
  std::string client_cert_file;
  std::string client_key_file;
  std::chrono::milliseconds start_timeout{20000};
};

// One OpAMP request as the mock saw it.
struct OpampMockMessage {
  int status = 0;      // the HTTP status answered
  nlohmann::json a2s;  // the decoded AgentToServer; null when it did not decode
  nlohmann::json s2a;  // the ServerToAgent answered; null for an HTTP error
  std::string error;
  std::chrono::steady_clock::time_point received;  // when the test process read it

  [[nodiscard]] std::uint64_t sequenceNum() const { return number(a2s, "sequenceNum"); }
  [[nodiscard]] bool has(const char* field) const {
    return a2s.is_object() && a2s.contains(field) && !a2s[field].is_null();
  }
  // Whether the message carries the full state (description, health, effective config, remote
  // config status).
  [[nodiscard]] bool fullState() const {
    return has("agentDescription") && has("health") && has("effectiveConfig") &&
           has("remoteConfigStatus");
  }

  // A uint64/fixed64 field (protobuf JSON writes them as strings); 0 when absent.
  static std::uint64_t number(const nlohmann::json& object, const char* field) {
    if (!object.is_object() || !object.contains(field)) return 0;
    const auto& v = object[field];
    return v.is_string() ? std::stoull(v.get<std::string>()) : v.get<std::uint64_t>();
  }
  // A bytes field (base64 in protobuf JSON), decoded.
  static std::string bytes(const nlohmann::json& value) {
    if (!value.is_string()) return {};
    const auto text = value.get<std::string>();
    std::string out(text.size(), '\0');
    std::size_t len = 0;
    if (mbedtls_base64_decode(reinterpret_cast<unsigned char*>(out.data()), out.size(), &len,
                              reinterpret_cast<const unsigned char*>(text.data()),
                              text.size()) != 0) {
      return {};
    }
    out.resize(len);
    return out;
  }
  // KeyValue list -> key to string value.
  static std::map<std::string, std::string> attributes(const nlohmann::json& list) {
    std::map<std::string, std::string> out;
    if (!list.is_array()) return out;
    for (const auto& kv : list) {
      out[kv.value("key", "")] =
          kv.value("value", nlohmann::json::object()).value("stringValue", "");
    }
    return out;
  }
};

class OpampMock {
 public:
  explicit OpampMock(OpampMockOptions options = {}) : options_(std::move(options)) {
    const std::string peers = std::string(CISTERN_SOURCE_DIR) + "/tests/peers";
    if (!std::filesystem::exists(peers + "/node_modules/@elastic/mockopampserver/package.json")) {
      error_ = "@elastic/mockopampserver is not installed in " + peers +
               "/node_modules: run scripts/peers.sh";
      return;
    }
    // env finds node in PATH; when it is missing, env exits 127 and says so on stderr.
    std::vector<std::string> argv = {
        "/usr/bin/env", "node",   peers + "/opamp_mock.js",     "--host",
        "127.0.0.1",    "--port", std::to_string(options_.port)};
    const std::pair<const char*, const std::string*> files[] = {{"--ca", &options_.ca_file},
                                                                {"--cert", &options_.cert_file},
                                                                {"--key", &options_.key_file}};
    for (const auto& [flag, file] : files) {
      if (file->empty()) continue;
      argv.emplace_back(flag);
      argv.push_back(*file);
    }
    if (options_.request_client_cert) argv.emplace_back("--request-client-cert");
    child_ = std::make_unique<Child>(argv);
    reader_ = std::thread([this] { read(); });
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, options_.start_timeout, [&] { return !url_.empty() || exited_; })) {
      error_ = "the OpAMP mock did not start listening within " +
               std::to_string(options_.start_timeout.count()) + " ms; stderr: " + err_;
    } else if (url_.empty()) {
      error_ =
          "the OpAMP mock exited at start (is node installed? scripts/bootstrap.sh); "
          "stderr: " +
          err_ + " stdout: " + unparsed_;
    }
  }
  ~OpampMock() { stop(); }
  OpampMock(const OpampMock&) = delete;
  OpampMock& operator=(const OpampMock&) = delete;

  // Empty when the mock is listening; otherwise what went wrong and what to run.
  [[nodiscard]] std::string error() const {
    std::lock_guard lk(mu_);
    return error_;
  }
  // The OpAMP endpoint: "http://127.0.0.1:<port>/v1/opamp" (https:// with a certificate).
  [[nodiscard]] std::string url() const {
    std::lock_guard lk(mu_);
    return url_;
  }

  // Every OpAMP request so far, in arrival order.
  [[nodiscard]] std::vector<OpampMockMessage> messages() const {
    std::lock_guard lk(mu_);
    return messages_;
  }
  // Waits until `n` requests arrived (false on timeout or when the mock exited).
  bool waitForMessages(std::size_t n,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    return waitFor([n](const std::vector<OpampMockMessage>& m) { return m.size() >= n; }, timeout);
  }
  // Waits until `done` holds for the messages so far (false on timeout).
  bool waitFor(const std::function<bool(const std::vector<OpampMockMessage>&)>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return done(messages_) || exited_; }) && done(messages_);
  }

  // Offers this config map (name -> body, content type text/yaml) from now on; returns the
  // mock's config hash (raw bytes), empty on failure (see controlError()).
  std::string setRemoteConfig(const std::map<std::string, std::string>& files) {
    nlohmann::json body = {{"files", nlohmann::json::object()}};
    for (const auto& [name, text] : files) {
      body["files"][name] = {{"body", text}, {"contentType", "text/yaml"}};
    }
    const auto result = control("/cistern/remote-config", body);
    std::string hash;
    const std::string hex = result.is_object() ? result.value("hash", "") : "";
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
      hash += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    }
    return hash;
  }
  bool withdrawRemoteConfig() {
    return !control("/cistern/remote-config", {{"files", nullptr}}).is_null();
  }
  // The next answer sets ReportFullState.
  bool requestFullState() { return !control("/cistern/report-full-state", {}).is_null(); }
  // The mock forgets every agent, as a restarted server.
  bool forgetAgents() { return !control("/cistern/forget-agents", {}).is_null(); }
  // Answers carry connection_settings.opamp.heartbeat_interval_seconds (0: no longer).
  bool setHeartbeatInterval(int seconds) {
    return !control("/cistern/heartbeat-interval", {{"seconds", seconds}}).is_null();
  }
  // The next `count` OpAMP requests get `status` (and Retry-After when not empty).
  bool failNext(int count, int status, const std::string& retry_after = {}) {
    nlohmann::json body = {{"count", count}, {"status", status}};
    if (!retry_after.empty()) body["retryAfter"] = retry_after;
    return !control("/cistern/fail", body).is_null();
  }
  // The next `count` answers are a ServerErrorResponse of `type` ("unavailable", "bad_request",
  // "unknown"), with retry_info when retry_after_ms >= 0.
  bool errorResponseNext(int count, const std::string& type, const std::string& message,
                         long retry_after_ms = -1) {
    nlohmann::json body = {{"count", count}, {"type", type}, {"message", message}};
    if (retry_after_ms >= 0) body["retryAfterMs"] = retry_after_ms;
    return !control("/cistern/error-response", body).is_null();
  }
  // The next `count` OpAMP requests are never answered (a hung server).
  bool stallNext(int count) { return !control("/cistern/stall", {{"count", count}}).is_null(); }
  [[nodiscard]] std::string controlError() const {
    std::lock_guard lk(mu_);
    return control_error_;
  }
  // Lines the mock printed that are not events or are error events (should stay empty), and its
  // stderr.
  [[nodiscard]] std::string diagnostics() const {
    std::lock_guard lk(mu_);
    return "unparsed: " + unparsed_ + " errors: " + errors_ + " stderr: " + err_;
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
  // POSTs a control request; the parsed JSON answer, or null (and controlError()) on failure.
  nlohmann::json control(const std::string& path, const nlohmann::json& body) {
    std::string base = url();
    if (const auto at = base.rfind("/v1/opamp"); at != std::string::npos) base.resize(at);
    const std::string text = body.dump();
    std::string answer;
    CURL* curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, (base + path).c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(text.size()));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (!options_.client_cert_file.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLCERT, options_.client_cert_file.c_str());
      curl_easy_setopt(curl, CURLOPT_SSLKEY, options_.client_key_file.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION, +[](char* data, std::size_t size, std::size_t n, void* out) {
          static_cast<std::string*>(out)->append(data, size * n);
          return size * n;
        });
    const CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    std::lock_guard lk(mu_);
    if (rc != CURLE_OK || status != 200) {
      control_error_ = path + ": " + (rc != CURLE_OK ? curl_easy_strerror(rc) : answer);
      return nullptr;
    }
    auto parsed = nlohmann::json::parse(answer, nullptr, false);
    return parsed.is_discarded() ? nlohmann::json::object() : parsed;
  }

  // The reader thread: the only user of child_ until stop() joins it.
  void read() {
    std::size_t err_seen = 0;
    bool open = true;
    while (open) {
      open = child_->pump(std::chrono::milliseconds(100));
      std::string& out = child_->out();
      std::size_t line_start = 0;
      std::size_t nl = 0;
      while ((nl = out.find('\n', line_start)) != std::string::npos) {
        event(out.substr(line_start, nl - line_start));
        line_start = nl + 1;
      }
      out.erase(0, line_start);
      std::lock_guard lk(mu_);
      err_.append(child_->err(), err_seen);
      err_seen = child_->err().size();
    }
    std::lock_guard lk(mu_);
    exited_ = true;
    cv_.notify_all();
  }

  void event(const std::string& line) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lk(mu_);
    const std::string kind = j.is_object() ? j.value("event", "") : "";
    if (kind == "listening") {
      url_ = j.value("url", "");
    } else if (kind == "message") {
      messages_.push_back(OpampMockMessage{j.value("status", 0), j.value("a2s", nlohmann::json()),
                                           j.value("s2a", nlohmann::json()), j.value("error", ""),
                                           now});
    } else if (kind == "error") {
      errors_ += j.value("message", "") + "\n";
    } else if (kind != "control") {
      unparsed_ += line.substr(0, 300) + "\n";
    }
    cv_.notify_all();
  }

  OpampMockOptions options_;
  std::unique_ptr<Child> child_;
  std::thread reader_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::string error_;
  std::string url_;
  bool exited_ = false;
  std::string err_;
  std::string errors_;
  std::string unparsed_;
  std::string control_error_;
  std::vector<OpampMockMessage> messages_;
};

}  // namespace cistern::testing
