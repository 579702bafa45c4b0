#include "cistern/platform/event_loop.h"

#include <pthread.h>
#include <uv.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace cistern::platform {

struct EventLoop::Impl {
  uv_loop_t loop{};
  uv_async_t wake{};
  std::thread thread;
  std::thread::id thread_id;
  std::mutex mu;
  std::deque<std::function<void()>> queue;  // guarded by mu
  bool stopping = false;                    // guarded by mu
  bool stopped = false;                     // stop() finished; loop thread only reads on exit

  void drain() {
    std::deque<std::function<void()>> run;
    bool stop_now = false;
    {
      std::lock_guard lk(mu);
      run.swap(queue);
      stop_now = stopping;
    }
    for (auto& fn : run) fn();
    if (stop_now) closeAll();
  }

  void closeAll() {
    uv_walk(
        &loop,
        [](uv_handle_t* h, void* arg) {
          auto* self = static_cast<Impl*>(arg);
          if (uv_is_closing(h) != 0) return;
          if (h != reinterpret_cast<uv_handle_t*>(&self->wake)) {
            std::shared_ptr<spdlog::logger> log = spdlog::get("platform");
            if (!log) log = spdlog::stderr_color_mt("platform");
            log->warn("event loop stopping with a {} handle still open; closing it",
                      uv_handle_type_name(h->type));
          }
          uv_close(h, nullptr);
        },
        this);
  }
};

namespace {
void onWake(uv_async_t* async) { static_cast<EventLoop::Impl*>(async->data)->drain(); }
}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::start(const std::string& name) {
  auto impl = std::make_unique<Impl>();
  if (int rc = uv_loop_init(&impl->loop); rc != 0) {
    return fail(ErrorCode::kIo, std::string("creating an event loop: ") + uv_strerror(rc));
  }
  impl->wake.data = impl.get();
  if (int rc = uv_async_init(&impl->loop, &impl->wake, onWake); rc != 0) {
    uv_loop_close(&impl->loop);
    return fail(ErrorCode::kIo, std::string("creating an event loop: ") + uv_strerror(rc));
  }
  Impl* raw = impl.get();
  std::mutex started_mu;
  std::condition_variable started_cv;
  bool started = false;
  impl->thread = std::thread([raw, name, &started_mu, &started_cv, &started] {
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    {
      // Notified under the lock: start() may return (and destroy started_cv, on its stack) as
      // soon as it sees `started`, which it cannot before this block releases the lock.
      std::lock_guard lk(started_mu);
      raw->thread_id = std::this_thread::get_id();
      started = true;
      started_cv.notify_one();
    }
    uv_run(&raw->loop, UV_RUN_DEFAULT);
  });
  std::unique_lock lk(started_mu);
  started_cv.wait(lk, [&] { return started; });
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(impl)));
}

EventLoop::EventLoop(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EventLoop::~EventLoop() { stop(); }

bool EventLoop::post(std::function<void()> fn) {
  // The wake-up is sent under the lock: once stop() has set `stopping`, the loop thread may close
  // `wake` and stop() may close the loop, and a uv_async_send after that writes to a closed
  // descriptor (libuv aborts) or to freed memory.
  std::lock_guard lk(impl_->mu);
  if (impl_->stopping) return false;
  impl_->queue.push_back(std::move(fn));
  uv_async_send(&impl_->wake);
  return true;
}

bool EventLoop::runSync(const std::function<void()>& fn) {
  if (inLoopThread()) {
    fn();
    return true;
  }
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;
  const bool queued = post([&] {
    fn();
    std::lock_guard lk(done_mu);
    done = true;
    done_cv.notify_one();
  });
  if (!queued) return false;
  std::unique_lock lk(done_mu);
  done_cv.wait(lk, [&] { return done; });
  return true;
}

bool EventLoop::inLoopThread() const { return std::this_thread::get_id() == impl_->thread_id; }

void* EventLoop::uvLoop() const { return &impl_->loop; }

void EventLoop::stop() {
  if (!impl_ || impl_->stopped) return;
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
    uv_async_send(&impl_->wake);
  }
  if (impl_->thread.joinable()) impl_->thread.join();
  // Close callbacks queued by closeAll() ran before uv_run returned; nothing is left active.
  uv_loop_close(&impl_->loop);
  impl_->stopped = true;
}

}  // namespace cistern::platform
