// `cistern status [--address HOST:PORT | -c CONFIG] [--watch] [--json]`: what a running agent
// reports on GET /status, as a table (status/status_table.h) or as its JSON.
//
// The request is a blocking libcurl easy transfer with short timeouts and a bounded response:
// this is an operator's command, and an agent that does not answer within seconds is reported
// as not reachable rather than waited for.
#include <curl/curl.h>

#include <chrono>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "cistern/agent/commands.h"
#include "cistern/agent/config.h"
#include "status/listen_address.h"
#include "status/status_table.h"

namespace cistern::agent {
namespace {

constexpr std::size_t kMaxStatusBytes = std::size_t{8} << 20U;
constexpr const char* kClearScreen = "\x1b[H\x1b[2J";  // cursor home, erase the display

// curl_global_init is not thread-safe; the first transfer of the process runs it once.
Status initCurlOnce() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) {
    return fail(ErrorCode::kIo, std::string("initialising libcurl: ") + curl_easy_strerror(rc));
  }
  return ok();
}

struct Body {
  std::string text;
  bool too_large = false;
};

std::size_t collect(char* data, std::size_t size, std::size_t count, void* user) {
  auto& body = *static_cast<Body*>(user);
  const std::size_t n = size * count;
  if (body.text.size() + n > kMaxStatusBytes) {
    body.too_large = true;
    return 0;  // makes libcurl abort the transfer
  }
  body.text.append(data, n);
  return n;
}

// GET `url`; the body of a 200. Errors (kIo): libcurl's reason (refused, timed out), another
// status with the start of its body, an oversized body.
Result<std::string> httpGet(const std::string& url, std::chrono::milliseconds timeout) {
  if (auto init = initCurlOnce(); !init) return tl::unexpected(init.error());
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return fail(ErrorCode::kIo, "libcurl could not create a transfer");
  Body body;
  char error[CURL_ERROR_SIZE] = {};
  const long timeout_ms = static_cast<long>(timeout.count());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  // The agent is local: an http_proxy from the environment must not reroute the request.
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (body.too_large) {
    return fail(ErrorCode::kIo,
                fmt::format("{}: the answer exceeds {} bytes", url, kMaxStatusBytes));
  }
  if (rc != CURLE_OK) {
    return fail(
        ErrorCode::kIo,
        fmt::format("{}: {}", url, error[0] != '\0' ? std::string(error) : curl_easy_strerror(rc)),
        true);
  }
  if (status != 200) {
    std::string start = body.text.substr(0, 200);
    while (!start.empty() && start.back() == '\n') start.pop_back();
    return fail(ErrorCode::kIo, fmt::format("{}: HTTP {}: {}", url, status, start));
  }
  return std::move(body.text);
}

// The URL of /status from the options: the address given, the config's status.listen, or the
// default.
Result<std::string> statusUrl(const StatusOptions& options) {
  std::string address = options.address;
  if (address.empty() && !options.config_file.empty()) {
    auto config = loadConfigFile(options.config_file);
    if (!config) return tl::unexpected(config.error());
    address = config->status.listen;
    if (address.empty()) {
      return fail(ErrorCode::kConfig, fmt::format("{}: the status API is disabled (status.listen "
                                                  "is empty); nothing to ask",
                                                  options.config_file.string()));
    }
  }
  if (address.empty()) address = StatusSection{}.listen;
  auto parsed = parseListenAddress(address);
  if (!parsed) return tl::unexpected(parsed.error());
  // A server bound to every address is reached on loopback.
  if (parsed->isWildcard()) parsed->host = parsed->ipv6 ? "::1" : "127.0.0.1";
  return fmt::format("http://{}/status", parsed->toString());
}

// The screen for one fetch: the table, the JSON, or why there is neither.
Result<std::string> render(const StatusOptions& options, const Result<std::string>& body) {
  if (!body) return tl::unexpected(body.error());
  if (options.json) {
    std::string raw = *body;
    if (raw.empty() || raw.back() != '\n') raw += '\n';
    return raw;
  }
  auto table = renderStatusTable(*body);
  if (!table) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("the agent's answer could not be read: {}", table.error().message));
  }
  return table;
}

std::string localClock() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  char text[32];
  return {text, std::strftime(text, sizeof text, "%H:%M:%S", &local)};
}

int watch(const StatusOptions& options, const std::string& url, std::FILE* out) {
  for (int drawn = 0; options.watch_count == 0 || drawn < options.watch_count; ++drawn) {
    // Paced from the start of each fetch; a slow one delays the next screen, never doubles it.
    const auto next = std::chrono::steady_clock::now() + options.interval;
    const auto screen = render(options, httpGet(url, options.timeout));
    // One write per screen, so the terminal never shows half of one.
    std::string frame = kClearScreen;
    frame += fmt::format("{}  every {:.1f}s  {}  (Ctrl-C to stop)\n\n", url,
                         std::chrono::duration<double>(options.interval).count(), localClock());
    frame += screen ? *screen : "cannot get the agent's status: " + screen.error().message + "\n";
    std::fwrite(frame.data(), 1, frame.size(), out);
    std::fflush(out);
    if (options.watch_count == 0 || drawn + 1 < options.watch_count) {
      std::this_thread::sleep_until(next);
    }
  }
  return kExitOk;
}

}  // namespace

int statusCommand(const StatusOptions& options, std::FILE* out, std::FILE* err) {
  const auto url = statusUrl(options);
  if (!url) {
    fmt::print(err, "cistern status: {}\n", url.error().message);
    return kExitCannotRun;
  }
  if (options.watch) return watch(options, *url, out);
  const auto body = httpGet(*url, options.timeout);
  if (!body) {
    fmt::print(err,
               "cistern status: cannot get the agent's status: {}\n(is `cistern run` running, with "
               "this address in status.listen?)\n",
               body.error().message);
    return kExitCannotRun;
  }
  const auto screen = render(options, body);
  if (!screen) {
    fmt::print(err, "cistern status: {}: {}\n", *url, screen.error().message);
    return kExitCannotRun;
  }
  std::fwrite(screen->data(), 1, screen->size(), out);
  return kExitOk;
}

}  // namespace cistern::agent
