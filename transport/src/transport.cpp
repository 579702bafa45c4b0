// Transport: every output's Dispatcher and Senders on the agent's event loop.
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cistern/transport/http_client.h"
#include "cistern/transport/outputs.h"
#include "dispatcher.h"
#include "file_sender.h"
#include "output_senders.h"

namespace cistern::transport {
namespace {

struct Output {
  OutputOptions options;
  std::string name;
  std::string type;
  // Resources the senders share (an OTLP output's HTTP client); closed after the dispatcher.
  std::unique_ptr<SharedResources> shared;
  std::unique_ptr<Dispatcher> dispatcher;
};

using Outputs = std::vector<std::unique_ptr<Output>>;

class LoopTransport final : public Transport {
 public:
  LoopTransport(platform::EventLoop& loop, Identity identity)
      : loop_(loop), identity_(std::move(identity)) {}
  ~LoopTransport() override { stop(std::chrono::milliseconds(0)); }

  // Loop thread. Builds every output of `outputs` (not started) into `built`; every problem is
  // reported in one error.
  Status build(const std::vector<OutputOptions>& outputs, const CursorFor& cursors,
               Outputs& built) {
    std::string errors;
    const auto problem = [&errors](const std::string& text) {
      if (!errors.empty()) errors += '\n';
      errors += text;
    };
    for (const auto& options : outputs) {
      const std::string name = outputName(options);
      auto cursor = cursors(name);
      if (!cursor) {
        problem(fmt::format("output '{}': cannot open its cursor in the buffer: {}", name,
                            cursor.error().message));
        continue;
      }
      auto out = std::make_unique<Output>();
      out->options = options;
      out->name = name;
      out->type = outputType(options);
      auto made = makeOutputSenders(loop_, options, identity_);
      if (!made) {
        problem(made.error().message);
        continue;
      }
      out->shared = std::move(made->shared);
      DispatcherOptions dispatch;
      dispatch.output_name = name;
      dispatch.batch = batchOptionsOf(options);
      dispatch.retry = retryOptionsOf(options);
      dispatch.heartbeat = heartbeatOptionsOf(options);
      dispatch.drain = drainOptionsOf(options);
      out->dispatcher =
          std::make_unique<Dispatcher>(static_cast<uv_loop_t*>(loop_.uvLoop()), **cursor,
                                       std::move(made->senders), std::move(dispatch));
      built.push_back(std::move(out));
    }
    if (!errors.empty()) return fail(ErrorCode::kConfig, errors);
    return ok();
  }

  Status init(const std::vector<OutputOptions>& outputs, const CursorFor& cursors) {
    Status built = ok();
    loop_.runSync([&] {
      built = build(outputs, cursors, outputs_);
      notify_ = std::make_unique<uv_async_t>();
      notify_->data = this;
      uv_async_init(static_cast<uv_loop_t*>(loop_.uvLoop()), notify_.get(), [](uv_async_t* a) {
        auto* self = static_cast<LoopTransport*>(a->data);
        for (auto& o : self->outputs_) o->dispatcher->pump();
      });
    });
    return built;
  }

  void start() override {
    loop_.runSync([this] {
      for (auto& o : outputs_) o->dispatcher->start();
    });
  }

  void notifyCommitted() override {
    std::lock_guard lk(notify_mu_);
    if (notify_ && !stopping_) uv_async_send(notify_.get());
  }

  Status update(const std::vector<OutputOptions>& outputs, const CursorFor& cursors) override {
    // What stays, what goes, what comes: by name, and an output whose options changed is
    // replaced (it goes and its successor comes, on the same cursor).
    std::vector<OutputOptions> incoming;
    std::vector<std::string> leaving;
    loop_.runSync([&] {
      for (const auto& o : outputs_) {
        const auto same = std::find_if(outputs.begin(), outputs.end(), [&o](const auto& n) {
          return outputName(n) == o->name && n == o->options;
        });
        if (same == outputs.end()) leaving.push_back(o->name);
      }
      for (const auto& n : outputs) {
        const auto same = std::find_if(outputs_.begin(), outputs_.end(), [&n](const auto& o) {
          return outputName(n) == o->name && n == o->options;
        });
        if (same == outputs_.end()) incoming.push_back(n);
      }
    });
    // Build the newcomers first: a bad one changes nothing.
    Outputs made;
    Status built = ok();
    loop_.runSync([&] { built = build(incoming, cursors, made); });
    if (!built) {
      closeAll(made, std::chrono::milliseconds(0));
      return built;
    }
    Outputs gone;
    loop_.runSync([&] {
      for (auto it = outputs_.begin(); it != outputs_.end();) {
        if (std::find(leaving.begin(), leaving.end(), (*it)->name) != leaving.end()) {
          gone.push_back(std::move(*it));
          it = outputs_.erase(it);
        } else {
          ++it;
        }
      }
    });
    // The leaving ones finish what they have in flight briefly; the rest stays unacknowledged
    // and their successors (same cursor) send it again.
    closeAll(gone, std::chrono::milliseconds(2000));
    loop_.runSync([&] {
      for (auto& o : made) o->dispatcher->start();
      for (auto& o : made) outputs_.push_back(std::move(o));
    });
    return ok();
  }

  void stop(std::chrono::milliseconds grace) override {
    {
      std::lock_guard lk(notify_mu_);
      if (stopped_) return;
      stopping_ = true;
    }
    Outputs all;
    loop_.runSync([&] {
      all = std::move(outputs_);
      outputs_.clear();
    });
    closeAll(all, grace);
    std::mutex mu;
    std::condition_variable cv;
    bool closed = notify_ == nullptr;
    loop_.runSync([&] {
      if (!notify_) return;
      on_notify_closed_ = [&] {
        std::lock_guard lk(mu);
        closed = true;
        cv.notify_all();
      };
      uv_close(reinterpret_cast<uv_handle_t*>(notify_.get()),
               [](uv_handle_t* h) { static_cast<LoopTransport*>(h->data)->onNotifyClosed(); });
    });
    {
      std::unique_lock lk(mu);
      cv.wait_for(lk, std::chrono::seconds(10), [&] { return closed; });
    }
    // Their final figures stay readable through status().
    auto final_status = snapshot(all);
    loop_.runSync([&] { addSenderCounters(all, final_status); });
    std::lock_guard lk(final_mu_);
    final_status_ = std::move(final_status);
    retired_ = std::move(all);
    std::lock_guard nlk(notify_mu_);
    stopped_ = true;
  }

  [[nodiscard]] std::vector<OutputStatus> status() const override {
    // The list changes on the loop thread only, and the senders' counters live there.
    std::vector<OutputStatus> out;
    bool stopped = false;
    const bool ran = loop_.runSync([&] {
      out = snapshot(outputs_);
      addSenderCounters(outputs_, out);
      stopped = outputs_.empty();
    });
    if (!ran || stopped) {
      std::lock_guard lk(final_mu_);
      if (!final_status_.empty()) return final_status_;
    }
    return out;
  }

 private:
  static void addSenderCounters(const Outputs& outputs, std::vector<OutputStatus>& out) {
    for (std::size_t i = 0; i < outputs.size() && i < out.size(); ++i) {
      for (auto& c : outputs[i]->dispatcher->senderCounters()) {
        out[i].counters.push_back(std::move(c));
      }
    }
  }

  static std::vector<OutputStatus> snapshot(const Outputs& outputs) {
    std::vector<OutputStatus> out;
    for (const auto& o : outputs) {
      OutputStatus s;
      s.name = o->name;
      s.type = o->type;
      s.endpoint = o->dispatcher->endpoint();
      s.state = outputStateName(o->dispatcher->state());
      s.last_error = o->dispatcher->lastError();
      s.counters = o->dispatcher->counters();
      out.push_back(std::move(s));
    }
    return out;
  }

  // Stops reading, waits up to `grace` for what is in flight, then closes every dispatcher and
  // what its senders share. Not from the loop thread.
  void closeAll(Outputs& outputs, std::chrono::milliseconds grace) {
    if (outputs.empty()) return;
    loop_.runSync([&] {
      for (auto& o : outputs) o->dispatcher->drain();
    });
    const auto deadline = std::chrono::steady_clock::now() + grace;
    for (;;) {
      std::size_t in_flight = 0;
      loop_.runSync([&] {
        for (auto& o : outputs) in_flight += o->dispatcher->inFlight();
      });
      if (in_flight == 0 || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::mutex mu;
    std::condition_variable cv;
    std::size_t open = outputs.size();
    const auto closedOne = [&] {
      std::lock_guard lk(mu);
      --open;
      cv.notify_all();
    };
    loop_.runSync([&] {
      for (auto& o : outputs) {
        Output* out = o.get();
        out->dispatcher->close([out, closedOne] {
          if (out->shared) {
            out->shared->close(closedOne);
          } else {
            closedOne();
          }
        });
      }
    });
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return open == 0; });
  }

  void onNotifyClosed() {
    if (on_notify_closed_) on_notify_closed_();
  }

  platform::EventLoop& loop_;
  Identity identity_;
  Outputs outputs_;  // loop thread only
  mutable std::mutex final_mu_;
  Outputs retired_;                         // stopped; kept for their counters
  std::vector<OutputStatus> final_status_;  // guarded by final_mu_
  std::unique_ptr<uv_async_t> notify_;
  std::function<void()> on_notify_closed_;
  std::mutex notify_mu_;
  bool stopping_ = false;  // guarded by notify_mu_
  bool stopped_ = false;   // guarded by notify_mu_
};

}  // namespace

Result<std::unique_ptr<Transport>> Transport::create(platform::EventLoop& loop,
                                                     const std::vector<OutputOptions>& outputs,
                                                     const CursorFor& cursors,
                                                     const Identity& identity) {
  auto transport = std::make_unique<LoopTransport>(loop, identity);
  if (auto built = transport->init(outputs, cursors); !built) {
    return tl::unexpected(built.error());
  }
  return std::unique_ptr<Transport>(std::move(transport));
}

}  // namespace cistern::transport
