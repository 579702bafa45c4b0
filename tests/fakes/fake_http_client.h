// FakeHttpClient: a scripted HttpClient for tests of senders. It records every request and
// answers with scripted responses, in order, always asynchronously through the event loop (never
// inside send(), as the real client). A request that finds the script empty stays pending until
// the test answers it with answerNext(), or until close() fails it.
//
//   FakeHttpClient http(*loop);
//   http.script(FakeHttpClient::status(503, "busy"));
//   ... sender sends ...
//   auto requests = http.requests();   // copies, any thread
//
// Threads: send(), inFlight() and close() on the loop thread, like the real client; script(),
// answerNext(), requests() and counts from any thread (the test's).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cistern/platform/event_loop.h"
#include "cistern/transport/http_client.h"

namespace cistern::testing {

class FakeHttpClient : public transport::HttpClient {
 public:
  explicit FakeHttpClient(platform::EventLoop& loop) : loop_(loop) {}

  static transport::HttpResponse status(int code, std::string body = {}) {
    transport::HttpResponse r;
    r.status = code;
    r.body = std::move(body);
    return r;
  }
  // A transport failure: no HTTP response.
  static transport::HttpResponse failure(std::string error, bool tls_error = false,
                                         bool timed_out = false) {
    transport::HttpResponse r;
    r.error = std::move(error);
    r.tls_error = tls_error;
    r.timed_out = timed_out;
    return r;
  }

  // Appends a response for a future request.
  void script(transport::HttpResponse response) {
    std::lock_guard lk(mu_);
    script_.push_back(std::move(response));
  }

  // Answers the oldest pending request (through the loop). Returns false when none is pending.
  bool answerNext(transport::HttpResponse response) {
    Pending p;
    {
      std::lock_guard lk(mu_);
      if (pending_.empty()) return false;
      p = std::move(pending_.front());
      pending_.pop_front();
    }
    loop_.post([done = std::move(p.done), response = std::move(response)] { done(response); });
    return true;
  }

  void send(transport::HttpRequest request,
            std::function<void(transport::HttpResponse)> done) override {
    std::lock_guard lk(mu_);
    requests_.push_back(request);
    if (closed_) {
      loop_.post([done = std::move(done)] { done(failure("closed")); });
      return;
    }
    if (script_.empty()) {
      pending_.push_back(Pending{std::move(request), std::move(done)});
      return;
    }
    auto response = std::move(script_.front());
    script_.pop_front();
    ++*answering_;
    loop_.post([answering = answering_, done = std::move(done), response = std::move(response)] {
      --*answering;
      done(response);
    });
  }

  [[nodiscard]] std::size_t inFlight() const override {
    std::lock_guard lk(mu_);
    return pending_.size() + answering_->load();
  }

  void close(std::function<void()> closed) override {
    std::deque<Pending> failing;
    {
      std::lock_guard lk(mu_);
      closed_ = true;
      failing.swap(pending_);
    }
    for (auto& p : failing) {
      loop_.post([done = std::move(p.done)] { done(failure("closed")); });
    }
    loop_.post(std::move(closed));
  }

  // Every request sent so far, in order.
  [[nodiscard]] std::vector<transport::HttpRequest> requests() const {
    std::lock_guard lk(mu_);
    return requests_;
  }
  [[nodiscard]] std::size_t requestCount() const {
    std::lock_guard lk(mu_);
    return requests_.size();
  }
  [[nodiscard]] std::size_t pendingCount() const {
    std::lock_guard lk(mu_);
    return pending_.size();
  }

  // Polls until `n` requests were sent or `timeout` passed; returns whether they were.
  bool waitForRequests(std::size_t n,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (requestCount() < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

 private:
  struct Pending {
    transport::HttpRequest request;
    std::function<void(transport::HttpResponse)> done;
  };

  platform::EventLoop& loop_;
  mutable std::mutex mu_;
  std::deque<transport::HttpResponse> script_;
  std::deque<Pending> pending_;
  std::vector<transport::HttpRequest> requests_;
  // Scripted answers posted to the loop and not yet delivered; shared with the posted closures.
  std::shared_ptr<std::atomic<std::size_t>> answering_ =
      std::make_shared<std::atomic<std::size_t>>(0);
  bool closed_ = false;
};

}  // namespace cistern::testing
