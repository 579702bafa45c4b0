// Transport: every output's Dispatcher and Senders on the agent's event loop.
#include <uv.h>

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
  std::string name;
  std::string type;
  // Resources the senders share (an OTLP output's HTTP client); closed after the dispatcher.
  std::unique_ptr<SharedResources> shared;
  std::unique_ptr<Dispatcher> dispatcher;
};

class LoopTransport final : public Transport {
 public:
  explicit LoopTransport(platform::EventLoop& loop) : loop_(loop) {}
  ~LoopTransport() override { stop(std::chrono::milliseconds(0)); }

  Status build(const std::vector<OutputOptions>& outputs, const CursorFor& cursors,
               const Identity& identity) {
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
      Output out;
      out.name = name;
      out.type = outputType(options);
      auto made = makeOutputSenders(loop_, options, identity);
      if (!made) {
        problem(made.error().message);
        continue;
      }
      out.shared = std::move(made->shared);
      DispatcherOptions dispatch;
      dispatch.output_name = name;
      dispatch.batch = batchOptionsOf(options);
      dispatch.retry = retryOptionsOf(options);
      dispatch.heartbeat = heartbeatOptionsOf(options);
      dispatch.drain = drainOptionsOf(options);
      out.dispatcher =
          std::make_unique<Dispatcher>(static_cast<uv_loop_t*>(loop_.uvLoop()), **cursor,
                                       std::move(made->senders), std::move(dispatch));
      outputs_.push_back(std::move(out));
    }
    notify_ = std::make_unique<uv_async_t>();
    notify_->data = this;
    uv_async_init(static_cast<uv_loop_t*>(loop_.uvLoop()), notify_.get(), [](uv_async_t* a) {
      auto* self = static_cast<LoopTransport*>(a->data);
      for (auto& o : self->outputs_) o.dispatcher->pump();
    });
    if (!errors.empty()) return fail(ErrorCode::kConfig, errors);
    return ok();
  }

  void start() override {
    loop_.runSync([this] {
      for (auto& o : outputs_) o.dispatcher->start();
    });
  }

  void notifyCommitted() override {
    std::lock_guard lk(notify_mu_);
    if (notify_ && !stopping_) uv_async_send(notify_.get());
  }

  void stop(std::chrono::milliseconds grace) override {
    {
      std::lock_guard lk(notify_mu_);
      if (stopped_) return;
      stopping_ = true;
    }
    if (!loop_.runSync([this] {
          for (auto& o : outputs_) o.dispatcher->drain();
        })) {
      return;  // the loop is gone; nothing of ours can run any more
    }
    const auto deadline = std::chrono::steady_clock::now() + grace;
    for (;;) {
      std::size_t in_flight = 0;
      loop_.runSync([&] {
        for (auto& o : outputs_) in_flight += o.dispatcher->inFlight();
      });
      if (in_flight == 0 || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::mutex mu;
    std::condition_variable cv;
    std::size_t open = 0;
    const auto closedOne = [&] {
      std::lock_guard lk(mu);
      --open;
      cv.notify_all();
    };
    loop_.runSync([&] {
      open = outputs_.size() + 1;
      for (auto& o : outputs_) {
        Output* out = &o;
        out->dispatcher->close([out, closedOne] {
          if (out->shared) {
            out->shared->close(closedOne);
          } else {
            closedOne();
          }
        });
      }
      uv_close(reinterpret_cast<uv_handle_t*>(notify_.get()),
               [](uv_handle_t* h) { static_cast<LoopTransport*>(h->data)->onNotifyClosed(); });
      on_notify_closed_ = closedOne;
    });
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return open == 0; });
    std::lock_guard nlk(notify_mu_);
    stopped_ = true;
  }

  [[nodiscard]] std::vector<OutputStatus> status() const override {
    std::vector<OutputStatus> out;
    for (const auto& o : outputs_) {
      OutputStatus s;
      s.name = o.name;
      s.type = o.type;
      s.endpoint = o.dispatcher->endpoint();
      s.state = outputStateName(o.dispatcher->state());
      s.last_error = o.dispatcher->lastError();
      s.counters = o.dispatcher->counters();
      out.push_back(std::move(s));
    }
    // The senders' counters live on the loop thread; without a loop they are left out.
    loop_.runSync([&] {
      for (std::size_t i = 0; i < outputs_.size(); ++i) {
        for (auto& c : outputs_[i].dispatcher->senderCounters()) {
          out[i].counters.push_back(std::move(c));
        }
      }
    });
    return out;
  }

 private:
  void onNotifyClosed() {
    if (on_notify_closed_) on_notify_closed_();
  }

  platform::EventLoop& loop_;
  std::vector<Output> outputs_;
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
  auto transport = std::make_unique<LoopTransport>(loop);
  Status built = ok();
  loop.runSync([&] { built = transport->build(outputs, cursors, identity); });
  if (!built) return tl::unexpected(built.error());
  return std::unique_ptr<Transport>(std::move(transport));
}

}  // namespace cistern::transport
