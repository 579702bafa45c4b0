// StatusClient: the local status API of a running `cistern run` (agent/src/status/status_server.h)
// over HTTP on loopback, for integration tests: GET /status (JSON), /metrics (Prometheus text),
// /health. And parseHealthStatus(), which reads an OpAMP ComponentHealth `status` string as the
// agent writes it ("word key=value key=\"quoted value\" ...", logfmt style: see
// heartbeat/include/cistern/heartbeat/opamp.h), so a test can compare the heartbeat's figures with
// /status.
//
//   StatusClient api(status_port);
//   const nlohmann::json s = api.status();          // null while the agent does not answer
//   CHECK(StatusClient::names(s, "inputs") == std::vector<std::string>{"app"});
//   const auto h = parseHealthStatus("down backlog_records=12 endpoint=\"a b\"");
//   CHECK(h.attributes.at("backlog_records") == "12");
//
// No Catch assertions here: callers decide what a failure means. Tests link libcurl.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace cistern::testing {

struct HttpReply {
  long status = 0;  // 0 when the request failed
  std::string body;
  std::string error;  // libcurl's, when the request failed
};

// One GET with libcurl (blocking, no proxy).
inline HttpReply httpGet(const std::string& url,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  HttpReply reply;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    reply.error = "curl_easy_init failed";
    return reply;
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, std::size_t size, std::size_t n, void* out) {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  const CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
  } else {
    reply.error = curl_easy_strerror(rc);
  }
  curl_easy_cleanup(curl);
  return reply;
}

class StatusClient {
 public:
  explicit StatusClient(int port) : base_("http://127.0.0.1:" + std::to_string(port)) {}

  [[nodiscard]] HttpReply get(const std::string& path) const { return httpGet(base_ + path); }

  // /status parsed; null when the agent did not answer 200 with a JSON object.
  [[nodiscard]] nlohmann::json status() const {
    const auto reply = get("/status");
    if (reply.status != 200) return nullptr;
    auto j = nlohmann::json::parse(reply.body, nullptr, false);
    return j.is_object() ? j : nlohmann::json(nullptr);
  }

  // The entry named `name` of a /status list ("inputs", "outputs"); null when absent.
  static nlohmann::json entry(const nlohmann::json& status, const char* list,
                              const std::string& name) {
    if (!status.is_object() || !status.contains(list)) return nullptr;
    for (const auto& e : status[list]) {
      if (e.value("name", "") == name) return e;
    }
    return nullptr;
  }
  // The names in a /status list, in its order.
  static std::vector<std::string> names(const nlohmann::json& status, const char* list) {
    std::vector<std::string> out;
    if (!status.is_object() || !status.contains(list)) return out;
    for (const auto& e : status[list]) out.push_back(e.value("name", ""));
    return out;
  }
  // A counter of the "opamp" object; -1 when absent.
  static std::int64_t opampCounter(const nlohmann::json& status, const std::string& name) {
    if (!status.is_object() || !status.contains("opamp")) return -1;
    return status["opamp"]
        .value("counters", nlohmann::json::object())
        .value(name, std::int64_t{-1});
  }
  // agent.reloads_ok / agent.reloads_failed; -1 when absent.
  static std::int64_t reloads(const nlohmann::json& status, const char* which) {
    if (!status.is_object() || !status.contains("agent")) return -1;
    return status["agent"].value(which, std::int64_t{-1});
  }

 private:
  std::string base_;
};

// A ComponentHealth `status` as the agent writes it: the status word, then the attributes.
struct HealthStatus {
  std::string word;
  std::map<std::string, std::string> attributes;
  std::string error;  // empty when the text parsed
};

// Parses "word k=v k=\"v with \\\" escapes\" ..." (opamp.h): keys [A-Za-z0-9_.-]+, values bare
// (no space, quote, '=' or backslash) or quoted with \" \\ \n \r \t \xHH escapes, one space
// between fields.
inline HealthStatus parseHealthStatus(std::string_view text) {
  HealthStatus out;
  const auto fail = [&out](std::string why) {
    out.error = std::move(why);
    return out;
  };
  const auto isKeyChar = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  };
  std::size_t i = text.find(' ');
  out.word = std::string(text.substr(0, i));
  if (out.word.find('=') != std::string::npos) return fail("the status word holds '='");
  while (i != std::string_view::npos && i < text.size()) {
    ++i;  // the space
    const std::size_t key_start = i;
    while (i < text.size() && isKeyChar(text[i])) ++i;
    const std::string key(text.substr(key_start, i - key_start));
    if (key.empty() || i >= text.size() || text[i] != '=') {
      return fail("no key=value at offset " + std::to_string(key_start));
    }
    ++i;  // '='
    std::string value;
    if (i < text.size() && text[i] == '"') {
      ++i;
      bool closed = false;
      while (i < text.size()) {
        const char c = text[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c != '\\') {
          value += c;
          continue;
        }
        if (i >= text.size()) break;
        const char e = text[i++];
        if (e == '"' || e == '\\') {
          value += e;
        } else if (e == 'n') {
          value += '\n';
        } else if (e == 'r') {
          value += '\r';
        } else if (e == 't') {
          value += '\t';
        } else if (e == 'x' && i + 2 <= text.size()) {
          value += static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16));
          i += 2;
        } else {
          return fail("invalid escape in the value of " + key);
        }
      }
      if (!closed) return fail("unterminated value of " + key);
    } else {
      const std::size_t value_start = i;
      while (i < text.size() && text[i] != ' ') {
        if (text[i] == '"' || text[i] == '=' || text[i] == '\\') {
          return fail("unquoted value of " + key + " holds a quote, '=' or backslash");
        }
        ++i;
      }
      value = std::string(text.substr(value_start, i - value_start));
      if (value.empty()) return fail("empty unquoted value of " + key);
    }
    if (!out.attributes.emplace(key, std::move(value)).second) return fail(key + " twice");
    if (i < text.size() && text[i] != ' ') return fail("no space after the value of " + key);
  }
  return out;
}

}  // namespace cistern::testing
