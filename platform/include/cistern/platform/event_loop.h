// EventLoop: a libuv loop on a thread of its own, the home of the agent's asynchronous work
// (outputs, HTTP clients, timers, later the status API and OpAMP).
//
// The loop is not thread-safe: other threads reach it only through post() and runSync(), which
// wake it with uv_async_send. Code in module sources that uses libuv directly gets the loop from
// uvLoop() (a uv_loop_t*, typed void* so libuv's header stays out of this one) and may touch it
// only on the loop thread.
//
// Handles created on the loop belong to their owners, which must close them (uv_close) and wait
// for the close callbacks before the loop stops; stop() closes whatever is left and logs it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cistern/core/result.h"

namespace cistern::platform {

class EventLoop {
 public:
  // Starts the loop's thread, named `name` (at most 15 characters are kept). Errors: kIo.
  static Result<std::unique_ptr<EventLoop>> start(const std::string& name);

  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Queues `fn` to run on the loop thread, in order with other posts. Any thread. Returns false
  // (and drops `fn`) once stop() began.
  bool post(std::function<void()> fn);

  // Runs `fn` on the loop thread and returns when it did; runs it at once when called on the loop
  // thread. Returns false, without running it, once stop() began.
  bool runSync(const std::function<void()>& fn);

  // True on the loop's own thread.
  [[nodiscard]] bool inLoopThread() const;

  // The uv_loop_t*. Use only on the loop thread.
  [[nodiscard]] void* uvLoop() const;

  // Runs what is queued, closes every handle still open, stops the loop and joins its thread.
  // Idempotent; not from the loop thread.
  void stop();

  struct Impl;

 private:
  explicit EventLoop(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cistern::platform
