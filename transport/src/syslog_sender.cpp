#include "syslog_sender.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <chrono>
#include <deque>
#include <list>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "cistern/core/record.h"
#include "cistern/platform/process.h"
#include "relp_protocol.h"
#include "stream_connection.h"
#include "syslog_format.h"
#include "transport_log.h"

namespace cistern::transport {
namespace {

using Clock = std::chrono::steady_clock;

// How often the sender asks the kernel what the receiver acknowledged (TCP, TLS) and checks
// deadlines, while anything waits.
constexpr std::chrono::milliseconds kTickInterval{10};
constexpr std::chrono::seconds kLogInterval{10};

enum class Answer : std::uint8_t { kPending, kAccepted, kRefused };

std::string describeOutput(const SyslogOutputOptions& options, std::string_view endpoint) {
  return fmt::format("output '{}': endpoint '{}'", options.name, endpoint);
}

SendResult deliveredResult() {
  SendResult r;
  r.outcome = Outcome::kDelivered;
  return r;
}

SendResult retryResult(std::string error, bool config_error = false) {
  SendResult r;
  r.outcome = Outcome::kRetry;
  r.error = std::move(error);
  r.config_error = config_error;
  return r;
}

// One batch from send() to its result.
struct Entry {
  std::shared_ptr<const Batch> batch;
  std::function<void(SendResult)> done;
  Clock::time_point started;

  // tcp/tls: the batch's octet-counted messages until written, then its end offset on the wire.
  std::string wire;
  bool written = false;
  std::uint64_t wire_end = 0;
  Clock::time_point written_at;

  // relp: one message per element (emptied once sent), what the receiver answered for each,
  // the next one to send and how many are not answered yet.
  std::vector<std::string> messages;
  std::vector<Answer> answers;
  std::size_t next_message = 0;
  std::size_t unanswered = 0;

  std::uint64_t messages_total = 0;  // formatted messages (tcp/tls and relp alike)
  std::uint64_t skipped = 0;
  std::uint64_t rejected = 0;  // corrupt records and refused messages
  std::uint64_t refused = 0;   // relp: messages the receiver answered with an error
  std::uint64_t bytes = 0;
  std::string error;  // the first rejection, naming the endpoint

  bool finished = false;  // result decided; completed once every earlier entry is
  SendResult result;
};

// The answered messages of a failed RELP batch, so that its resend skips them.
struct Remembered {
  std::uint64_t seq = 0;
  FrameId first_frame = 0;
  FrameId last_frame = 0;
  std::uint64_t records = 0;
  std::vector<Answer> answers;
  std::uint64_t refused = 0;
  std::string error;
};

bool sameBatch(const Remembered& r, const Batch& b) {
  const auto& frames = b.frames.frames();
  return !frames.empty() && r.seq == b.seq && r.first_frame == frames.front().id &&
         r.last_frame == frames.back().id && r.records == b.frames.records();
}

// Counts the handles a sender still waits for after close(), and runs `closed` at zero. Shared
// with the close callbacks so that they stay harmless if the sender is gone.
struct CloseTracker {
  int pending = 0;
  bool closing = false;
  std::function<void()> closed;

  void release() {
    --pending;
    check();
  }
  void check() {
    if (!closing || pending > 0 || !closed) return;
    std::function<void()> fn = std::move(closed);
    closed = nullptr;
    fn();
  }
};

// Checks the server's answer to "open" (txnr 1): nullopt when the session may be used; a refusal
// or a server without the syslog command is a configuration matter.
std::optional<ConnectionError> checkOpenAnswer(const RelpFrame& frame, std::string_view endpoint) {
  const auto error = [&](std::string_view what, bool config_error) {
    return ConnectionError{fmt::format("{}: {}", endpoint, what), config_error};
  };
  auto rsp = parseRelpResponse(frame.data);
  if (frame.command != "rsp" || frame.txnr != 1 || !rsp) {
    return error(fmt::format("RELP protocol error: unexpected '{}' frame with txnr {} in answer "
                             "to open",
                             frame.command, frame.txnr),
                 false);
  }
  if (rsp->status != 200) {
    return error(
        fmt::format("the receiver refused the RELP session: {} {}", rsp->status, rsp->text), true);
  }
  const RelpOffers offers = parseRelpOffers(rsp->data);
  if (!offers.has_version || !offers.syslog_command) {
    return error("the RELP receiver does not offer relp_version and the syslog command", true);
  }
  return std::nullopt;
}

class SyslogSenderImpl;

// A probe: a connection of its own (+ TLS handshake, + RELP open) that reports and closes.
struct Probe final : StreamConnection::Handler {
  Probe(SyslogSenderImpl& o, std::function<void(SendResult)> d) : owner(o), done(std::move(d)) {}

  void onConnected() override;
  void onData(std::string_view data) override;
  void onFailed(const ConnectionError& error) override;

  SyslogSenderImpl& owner;
  std::function<void(SendResult)> done;
  Clock::time_point deadline;
  std::unique_ptr<StreamConnection> conn;
  RelpParser parser;
  bool finished = false;
};

class SyslogSenderImpl final : public SyslogSender, private StreamConnection::Handler {
 public:
  SyslogSenderImpl(platform::EventLoop& loop, std::string endpoint, SyslogEndpoint target,
                   SyslogOutputOptions options, Identity identity,
                   std::shared_ptr<const TlsClientConfig> tls)
      : loop_(loop),
        endpoint_(std::move(endpoint)),
        target_(std::move(target)),
        options_(std::move(options)),
        identity_(std::move(identity)),
        tls_(std::move(tls)),
        tracker_(std::make_shared<CloseTracker>()) {
    if (identity_.host_name.empty()) identity_.host_name = platform::hostName();
    format_options_.max_message_bytes = options_.max_message_bytes;
  }

  [[nodiscard]] const std::string& endpoint() const override { return endpoint_; }
  [[nodiscard]] std::size_t maxInFlight() const override {
    return std::max<std::size_t>(1, options_.batch.max_in_flight);
  }

  void send(std::shared_ptr<const Batch> batch, std::function<void(SendResult)> done) override;
  void probe(std::function<void(SendResult)> done) override;
  void close(std::function<void()> closed) override;
  [[nodiscard]] std::vector<Counter> counters() const override {
    return {{"messages_truncated", messages_truncated_},
            {"records_corrupt", records_corrupt_},
            {"connections_opened", connections_opened_},
            {"connections_failed", connections_failed_}};
  }

  // For probes.
  [[nodiscard]] bool relp() const { return target_.relp(); }
  [[nodiscard]] std::unique_ptr<StreamConnection> newConnection(StreamConnection::Handler& h);
  [[nodiscard]] std::string openFrame() const;
  void finishProbe(Probe& p, SendResult result, std::string_view last_words = {});
  [[nodiscard]] std::string prefixed(std::string_view what) const {
    return fmt::format("{}: {}", endpoint_, what);
  }

 private:
  enum class ConnState { kNone, kConnecting, kOpening, kReady };

  // StreamConnection::Handler (the main connection).
  void onConnected() override;
  void onData(std::string_view data) override;
  void onFailed(const ConnectionError& error) override;

  void ensureTimers();
  void ensureTick();
  void tick();
  std::unique_ptr<Entry> makeEntry(std::shared_ptr<const Batch> batch,
                                   std::function<void(SendResult)> done);
  void applyRemembered(Entry& e);
  void startConnection();
  void writeTcp();
  void writeRelp();
  void pollTcp();
  bool handleRelpFrame(const RelpFrame& frame);
  void protocolError(std::string_view what);
  void failConnection(const ConnectionError& error);
  void closeConnection(std::unique_ptr<StreamConnection> conn, std::string_view last_words = {});
  void finish(Entry& e, SendResult result);
  void finishDelivered(Entry& e);
  void completeInOrder();
  void defer(std::function<void(SendResult)> done, SendResult result);
  void drainCompletions();

  platform::EventLoop& loop_;
  std::string endpoint_;
  SyslogEndpoint target_;
  SyslogOutputOptions options_;
  Identity identity_;
  std::shared_ptr<const TlsClientConfig> tls_;
  SyslogFormatOptions format_options_;
  std::string scratch_;

  std::unique_ptr<UvTimer> tick_timer_;
  std::unique_ptr<UvTimer> completion_timer_;
  std::deque<std::pair<std::function<void(SendResult)>, SendResult>> completions_;

  std::deque<std::unique_ptr<Entry>> entries_;  // in send order, until completed
  std::unique_ptr<StreamConnection> conn_;
  ConnState state_ = ConnState::kNone;
  // Last time the receiver acknowledged something (bytes or a RELP answer); ack_timeout runs from
  // here or from the oldest write, whichever is later, so a slow but moving receiver is not cut.
  Clock::time_point last_progress_;
  std::uint64_t last_acked_ = 0;

  RelpParser parser_;
  std::uint32_t next_txnr_ = 1;
  Clock::time_point open_sent_at_;
  struct Outstanding {
    std::uint32_t txnr = 0;
    Entry* entry = nullptr;
    std::size_t index = 0;
    Clock::time_point sent_at;
  };
  std::deque<Outstanding> outstanding_;
  std::deque<Remembered> remembered_;

  std::list<std::unique_ptr<Probe>> probes_;
  bool closing_ = false;
  std::shared_ptr<CloseTracker> tracker_;

  std::uint64_t messages_truncated_ = 0;
  std::uint64_t records_corrupt_ = 0;
  std::uint64_t connections_opened_ = 0;
  std::uint64_t connections_failed_ = 0;
  Clock::time_point last_log_;
};

// ---- probes ----

void Probe::onConnected() {
  if (!owner.relp()) {
    owner.finishProbe(*this, deliveredResult());
    return;
  }
  conn->write(owner.openFrame());
}

void Probe::onData(std::string_view data) {
  if (!owner.relp() || finished) return;
  parser.feed(data);
  RelpFrame frame;
  const auto next = parser.next(frame);
  if (next == RelpParser::Next::kNeedMore) return;
  if (next == RelpParser::Next::kError) {
    owner.finishProbe(*this, retryResult(owner.prefixed("RELP protocol error: " + parser.error())));
    return;
  }
  if (auto error = checkOpenAnswer(frame, owner.endpoint())) {
    owner.finishProbe(*this, retryResult(error->message, error->config_error));
    return;
  }
  std::string close_frame;
  appendRelpFrame(close_frame, 2, "close", {});
  owner.finishProbe(*this, deliveredResult(), close_frame);
}

void Probe::onFailed(const ConnectionError& error) {
  owner.finishProbe(*this, retryResult(error.message, error.config_error));
}

// ---- the sender ----

std::unique_ptr<StreamConnection> SyslogSenderImpl::newConnection(StreamConnection::Handler& h) {
  StreamConnection::Options o;
  o.host = target_.host;
  o.port = target_.port;
  o.endpoint = endpoint_;
  o.connect_timeout = options_.connect_timeout;
  if (target_.tls()) o.tls = tls_;
  return std::make_unique<StreamConnection>(loop_.uvLoop(), std::move(o), h);
}

std::string SyslogSenderImpl::openFrame() const {
  std::string frame;
  appendRelpFrame(frame, 1, "open", relpOpenOffers(identity_.version));
  return frame;
}

void SyslogSenderImpl::ensureTimers() {
  if (tick_timer_) return;
  tick_timer_ = std::make_unique<UvTimer>(loop_.uvLoop());
  completion_timer_ = std::make_unique<UvTimer>(loop_.uvLoop());
}

void SyslogSenderImpl::ensureTick() {
  if (!tick_timer_->active()) tick_timer_->start(kTickInterval, kTickInterval, [this] { tick(); });
}

void SyslogSenderImpl::send(std::shared_ptr<const Batch> batch,
                            std::function<void(SendResult)> done) {
  assert(loop_.inLoopThread());
  if (closing_) {
    // Called after close(): answer without calling back inside send().
    loop_.post([done = std::move(done)] { done(retryResult("closed")); });
    return;
  }
  ensureTimers();
  entries_.push_back(makeEntry(std::move(batch), std::move(done)));
  Entry& e = *entries_.back();
  if (e.unanswered == 0 && e.wire.empty()) {
    finishDelivered(e);
    completeInOrder();
    return;
  }
  switch (state_) {
    case ConnState::kNone:
      startConnection();
      break;
    case ConnState::kReady:
      if (target_.relp()) {
        writeRelp();
      } else {
        writeTcp();
      }
      break;
    case ConnState::kConnecting:
    case ConnState::kOpening:
      break;
  }
  ensureTick();
}

std::unique_ptr<Entry> SyslogSenderImpl::makeEntry(std::shared_ptr<const Batch> batch,
                                                   std::function<void(SendResult)> done) {
  auto e = std::make_unique<Entry>();
  e->batch = std::move(batch);
  e->done = std::move(done);
  e->started = Clock::now();
  format_options_.host_name = identity_.host_name;
  for (const FrameView& frame : e->batch->frames.frames()) {
    RecordReader reader(frame.body);
    std::uint32_t seen = 0;
    while (const RecordView* record = reader.next()) {
      ++seen;
      const FormatResult r = formatRfc5424(*record, format_options_, scratch_);
      switch (r.outcome) {
        case FormatOutcome::kSkipped:
          ++e->skipped;
          continue;
        case FormatOutcome::kCorrupt:
          ++e->rejected;
          ++records_corrupt_;
          if (e->error.empty()) {
            e->error =
                prefixed(fmt::format("a record of frame {} is corrupt: {}", frame.id, r.error));
          }
          continue;
        case FormatOutcome::kFormatted:
          break;
      }
      if (r.truncated) ++messages_truncated_;
      ++e->messages_total;
      if (target_.relp()) {
        e->messages.push_back(scratch_);
      } else {
        appendOctetCounted(e->wire, scratch_);
      }
    }
    // Records the frame announces but its body does not hold (a frame the buffer's checksum let
    // through, which should not happen): counted, so that records in = records out.
    if (seen < frame.record_count) {
      e->rejected += frame.record_count - seen;
      records_corrupt_ += frame.record_count - seen;
      if (e->error.empty()) {
        e->error = prefixed(fmt::format("frame {} is malformed after {} of its {} records: {}",
                                        frame.id, seen, frame.record_count,
                                        reader.failed() ? reader.error() : "body too short"));
      }
    }
  }
  if (target_.relp()) {
    e->answers.assign(e->messages.size(), Answer::kPending);
    e->unanswered = e->messages.size();
    if (e->batch->attempt > 0) applyRemembered(*e);
    for (const auto& m : e->messages) e->bytes += m.size();
  } else {
    e->bytes = e->wire.size();
  }
  return e;
}

void SyslogSenderImpl::applyRemembered(Entry& e) {
  const auto it = std::find_if(remembered_.begin(), remembered_.end(),
                               [&](const Remembered& r) { return sameBatch(r, *e.batch); });
  if (it == remembered_.end()) return;
  if (it->answers.size() == e.answers.size()) {
    e.answers = it->answers;
    e.rejected += it->refused;
    e.refused += it->refused;
    if (e.error.empty()) e.error = it->error;
    for (std::size_t i = 0; i < e.answers.size(); ++i) {
      if (e.answers[i] == Answer::kPending) continue;
      --e.unanswered;
      e.messages[i].clear();
    }
  }
  remembered_.erase(it);
}

void SyslogSenderImpl::startConnection() {
  ++connections_opened_;
  conn_ = newConnection(*this);
  state_ = ConnState::kConnecting;
  conn_->connect();
}

void SyslogSenderImpl::onConnected() {
  last_progress_ = Clock::now();
  last_acked_ = 0;
  if (!target_.relp()) {
    state_ = ConnState::kReady;
    writeTcp();
    return;
  }
  parser_ = RelpParser();
  next_txnr_ = 2;  // 1 is the open
  state_ = ConnState::kOpening;
  open_sent_at_ = Clock::now();
  conn_->write(openFrame());
}

void SyslogSenderImpl::writeTcp() {
  const auto now = Clock::now();
  for (auto& e : entries_) {
    if (e->written || e->finished) continue;
    e->wire_end = conn_->write(e->wire);
    e->written = true;
    e->written_at = now;
    std::string().swap(e->wire);
  }
}

void SyslogSenderImpl::writeRelp() {
  if (state_ != ConnState::kReady) return;
  const auto now = Clock::now();
  std::string out;
  for (auto& e : entries_) {
    while (e->next_message < e->messages.size() && outstanding_.size() < kRelpWindow) {
      const std::size_t index = e->next_message++;
      if (e->answers[index] != Answer::kPending) continue;
      const std::uint32_t txnr = next_txnr_;
      next_txnr_ = nextRelpTxnr(next_txnr_);
      appendRelpFrame(out, txnr, "syslog", e->messages[index]);
      std::string().swap(e->messages[index]);
      outstanding_.push_back({txnr, e.get(), index, now});
    }
    if (outstanding_.size() >= kRelpWindow) break;
  }
  if (!out.empty()) conn_->write(out);
}

void SyslogSenderImpl::onData(std::string_view data) {
  // Plain syslog receivers say nothing; whatever they send is ignored.
  if (!target_.relp()) return;
  parser_.feed(data);
  RelpFrame frame;
  for (;;) {
    switch (parser_.next(frame)) {
      case RelpParser::Next::kNeedMore:
        return;
      case RelpParser::Next::kError:
        protocolError(parser_.error());
        return;
      case RelpParser::Next::kFrame:
        if (!handleRelpFrame(frame)) return;
        break;
    }
  }
}

bool SyslogSenderImpl::handleRelpFrame(const RelpFrame& frame) {
  if (frame.txnr == 0 && frame.command == "serverclose") {
    failConnection({prefixed("the receiver closed the RELP session (serverclose)")});
    return false;
  }
  if (state_ == ConnState::kOpening) {
    if (auto error = checkOpenAnswer(frame, endpoint_)) {
      failConnection(*error);
      return false;
    }
    state_ = ConnState::kReady;
    last_progress_ = Clock::now();
    writeRelp();
    return true;
  }
  if (frame.command != "rsp") {
    protocolError(fmt::format("unexpected command '{}' from the receiver", frame.command));
    return false;
  }
  auto rsp = parseRelpResponse(frame.data);
  if (outstanding_.empty() || frame.txnr != outstanding_.front().txnr) {
    protocolError(fmt::format("answer for txnr {} while {} was expected", frame.txnr,
                              outstanding_.empty() ? 0 : outstanding_.front().txnr));
    return false;
  }
  if (!rsp) {
    protocolError(fmt::format("malformed answer for txnr {}", frame.txnr));
    return false;
  }
  const Outstanding o = outstanding_.front();
  outstanding_.pop_front();
  last_progress_ = Clock::now();
  Entry& e = *o.entry;
  if (rsp->status == 200) {
    e.answers[o.index] = Answer::kAccepted;
  } else {
    e.answers[o.index] = Answer::kRefused;
    ++e.rejected;
    ++e.refused;
    if (e.error.empty()) {
      e.error =
          prefixed(fmt::format("the receiver refused a message: {} {}", rsp->status, rsp->text));
    }
  }
  if (--e.unanswered == 0) {
    finishDelivered(e);
    completeInOrder();
  }
  writeRelp();
  return true;
}

void SyslogSenderImpl::protocolError(std::string_view what) {
  failConnection({prefixed(fmt::format("RELP protocol error: {}", what))});
}

void SyslogSenderImpl::onFailed(const ConnectionError& error) { failConnection(error); }

void SyslogSenderImpl::pollTcp() {
  if (!conn_) return;
  auto acked = conn_->wireBytesAcked();
  if (!acked) return;
  if (*acked > last_acked_) {
    last_acked_ = *acked;
    last_progress_ = Clock::now();
  }
  bool any = false;
  for (auto& e : entries_) {
    if (e->finished) continue;
    if (!e->written || e->wire_end > *acked) break;
    finishDelivered(*e);
    any = true;
  }
  if (any) completeInOrder();
}

void SyslogSenderImpl::tick() {
  const auto now = Clock::now();
  const auto stalled = [&](Clock::time_point since) {
    return now - std::max(since, last_progress_) > options_.ack_timeout;
  };
  if (state_ == ConnState::kReady && !target_.relp()) {
    pollTcp();
    const auto waiting = std::find_if(entries_.begin(), entries_.end(),
                                      [](const auto& e) { return !e->finished && e->written; });
    if (waiting != entries_.end() && stalled((*waiting)->written_at)) {
      failConnection({prefixed(
          fmt::format("the receiver's TCP stack acknowledged nothing for {} ms (ack_timeout)",
                      options_.ack_timeout.count()))});
    }
  } else if (state_ == ConnState::kOpening && now - open_sent_at_ > options_.connect_timeout) {
    failConnection({prefixed(
        fmt::format("no answer to RELP open within {} ms", options_.connect_timeout.count()))});
  } else if (state_ == ConnState::kReady && !outstanding_.empty() &&
             stalled(outstanding_.front().sent_at)) {
    failConnection({prefixed(
        fmt::format("no RELP answer for {} ms (ack_timeout)", options_.ack_timeout.count()))});
  }
  for (auto& p : probes_) {
    if (!p->finished && now > p->deadline) {
      finishProbe(*p, retryResult(prefixed(fmt::format("no answer to RELP open within {} ms",
                                                       options_.connect_timeout.count()))));
    }
  }
  if (entries_.empty() && probes_.empty()) tick_timer_->stop();
}

void SyslogSenderImpl::failConnection(const ConnectionError& error) {
  if (!conn_) return;
  ++connections_failed_;
  // Batches the receiver's TCP stack fully acknowledged before the break are delivered.
  if (!target_.relp() && state_ == ConnState::kReady) pollTcp();
  closeConnection(std::move(conn_));
  state_ = ConnState::kNone;
  outstanding_.clear();
  parser_ = RelpParser();
  // A receiver that stays down fails every attempt: one line per interval is enough.
  const auto now = Clock::now();
  if (connections_failed_ == 1 || now - last_log_ >= kLogInterval) {
    last_log_ = now;
    transportLogger()->warn("syslog connection failed output={} error=\"{}\" failures={}",
                            options_.name, error.message, connections_failed_);
  }
  for (auto& e : entries_) {
    if (e->finished) continue;
    if (target_.relp() && e->unanswered < e->answers.size()) {
      Remembered r;
      r.seq = e->batch->seq;
      const auto& frames = e->batch->frames.frames();
      r.first_frame = frames.empty() ? 0 : frames.front().id;
      r.last_frame = frames.empty() ? 0 : frames.back().id;
      r.records = e->batch->frames.records();
      r.answers = e->answers;
      r.refused = e->refused;
      r.error = e->error;
      remembered_.push_back(std::move(r));
      if (remembered_.size() > kRememberedBatches) remembered_.pop_front();
    }
    SendResult result = retryResult(error.message, error.config_error);
    result.bytes_sent = e->bytes;
    finish(*e, std::move(result));
  }
  completeInOrder();
}

void SyslogSenderImpl::closeConnection(std::unique_ptr<StreamConnection> conn,
                                       std::string_view last_words) {
  if (!conn) return;
  ++tracker_->pending;
  conn->close([tracker = tracker_] { tracker->release(); }, last_words);
}

void SyslogSenderImpl::finish(Entry& e, SendResult result) {
  e.finished = true;
  result.latency = Clock::now() - e.started;
  e.result = std::move(result);
}

void SyslogSenderImpl::finishDelivered(Entry& e) {
  SendResult r;
  // kRejected only when the receiver took nothing of a batch that had something to refuse.
  const std::uint64_t delivered = e.messages_total - e.refused;
  r.outcome = e.rejected > 0 && delivered == 0 ? Outcome::kRejected : Outcome::kDelivered;
  r.rejected_records = e.rejected;
  r.skipped_records = e.skipped;
  r.bytes_sent = e.bytes;
  r.error = e.error;
  finish(e, std::move(r));
}

void SyslogSenderImpl::completeInOrder() {
  while (!entries_.empty() && entries_.front()->finished) {
    std::unique_ptr<Entry> e = std::move(entries_.front());
    entries_.pop_front();
    defer(std::move(e->done), std::move(e->result));
  }
}

void SyslogSenderImpl::defer(std::function<void(SendResult)> done, SendResult result) {
  completions_.emplace_back(std::move(done), std::move(result));
  if (!completion_timer_->active()) {
    completion_timer_->start(std::chrono::milliseconds(0), std::chrono::milliseconds(0),
                             [this] { drainCompletions(); });
  }
}

void SyslogSenderImpl::drainCompletions() {
  probes_.remove_if([](const std::unique_ptr<Probe>& p) { return p->finished; });
  // Taken first: a callback may send again (queueing new completions) or close the sender.
  auto ready = std::move(completions_);
  completions_.clear();
  for (auto& [done, result] : ready) done(std::move(result));
}

void SyslogSenderImpl::probe(std::function<void(SendResult)> done) {
  assert(loop_.inLoopThread());
  if (closing_) {
    loop_.post([done = std::move(done)] { done(retryResult("closed")); });
    return;
  }
  ensureTimers();
  auto p = std::make_unique<Probe>(*this, std::move(done));
  p->deadline = Clock::now() + options_.connect_timeout;
  p->conn = newConnection(*p);
  Probe& ref = *p;
  probes_.push_back(std::move(p));
  ref.conn->connect();
  ensureTick();
}

void SyslogSenderImpl::finishProbe(Probe& p, SendResult result, std::string_view last_words) {
  if (p.finished) return;
  p.finished = true;
  closeConnection(std::move(p.conn), last_words);
  defer(std::move(p.done), std::move(result));
}

void SyslogSenderImpl::close(std::function<void()> closed) {
  assert(loop_.inLoopThread());
  if (closing_) return;
  closing_ = true;
  for (auto& p : probes_) {
    if (p->finished) continue;
    p->finished = true;
    closeConnection(std::move(p->conn));
    completions_.emplace_back(std::move(p->done), retryResult("closed"));
  }
  for (auto& e : entries_) {
    if (!e->finished) finish(*e, retryResult("closed"));
    completions_.emplace_back(std::move(e->done), std::move(e->result));
  }
  entries_.clear();
  if (conn_) {
    std::string last_words;
    if (state_ == ConnState::kReady && target_.relp()) {
      appendRelpFrame(last_words, next_txnr_, "close", {});
    }
    closeConnection(std::move(conn_), last_words);
  }
  state_ = ConnState::kNone;
  outstanding_.clear();
  for (auto* timer : {&tick_timer_, &completion_timer_}) {
    if (!*timer) continue;
    ++tracker_->pending;
    (*timer)->close([tracker = tracker_] { tracker->release(); });
    timer->reset();
  }
  auto ready = std::move(completions_);
  completions_.clear();
  probes_.clear();
  tracker_->closing = true;
  tracker_->closed = closed ? std::move(closed) : [] {};
  for (auto& [done, result] : ready) done(std::move(result));
  tracker_->check();
}

}  // namespace

Result<SyslogEndpoint> parseSyslogEndpoint(std::string_view endpoint) {
  const auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kConfig, fmt::format("endpoint '{}': {}", endpoint, why));
  };
  const auto sep = endpoint.find("://");
  if (sep == std::string_view::npos) {
    return bad("expected scheme://host:port (tcp, tls, relp or relp+tls)");
  }
  const std::string_view scheme = endpoint.substr(0, sep);
  SyslogEndpoint out;
  if (scheme == "tcp") {
    out.protocol = SyslogProtocol::kTcp;
  } else if (scheme == "tls") {
    out.protocol = SyslogProtocol::kTls;
  } else if (scheme == "relp") {
    out.protocol = SyslogProtocol::kRelp;
  } else if (scheme == "relp+tls") {
    out.protocol = SyslogProtocol::kRelpTls;
  } else {
    return bad(fmt::format("unknown scheme '{}' (expected tcp, tls, relp or relp+tls)", scheme));
  }
  std::string_view rest = endpoint.substr(sep + 3);
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unterminated '[' in the host");
    host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return bad("a port is required (host:port)");
    port = rest.substr(1);
  } else {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("a port is required (host:port)");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return bad("an IPv6 address must be written in brackets ([::1]:514)");
    }
  }
  if (host.empty()) return bad("the host is empty");
  const bool host_ok = std::all_of(host.begin(), host.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && c != '/' && c != '@' && c != '[' && c != ']';
  });
  if (!host_ok) return bad(fmt::format("'{}' is not a host name or address", host));
  unsigned value = 0;
  const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return bad(fmt::format("'{}' is not a port (1-65535)", port));
  }
  out.host.assign(host);
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

Result<std::shared_ptr<const TlsClientConfig>> loadSyslogTlsConfig(
    const SyslogOutputOptions& options) {
  const bool needed =
      std::any_of(options.endpoints.begin(), options.endpoints.end(), [](const std::string& e) {
        auto parsed = parseSyslogEndpoint(e);
        return parsed && parsed->tls();
      });
  if (!needed) return std::shared_ptr<const TlsClientConfig>();
  auto config = TlsClientConfig::load(options.tls);
  if (!config) {
    return fail(config.error().code,
                fmt::format("output '{}': {}", options.name, config.error().message));
  }
  return config;
}

Result<std::unique_ptr<SyslogSender>> makeSyslogSender(platform::EventLoop& loop,
                                                       const std::string& endpoint,
                                                       const SyslogOutputOptions& options,
                                                       const Identity& identity,
                                                       std::shared_ptr<const TlsClientConfig> tls) {
  auto target = parseSyslogEndpoint(endpoint);
  if (!target) {
    return fail(ErrorCode::kConfig,
                fmt::format("output '{}': {}", options.name, target.error().message));
  }
  if (target->tls() && !tls) {
    auto loaded = TlsClientConfig::load(options.tls);
    if (!loaded) {
      return fail(loaded.error().code,
                  fmt::format("{}: {}", describeOutput(options, endpoint), loaded.error().message));
    }
    tls = std::move(*loaded);
  }
  return std::unique_ptr<SyslogSender>(std::make_unique<SyslogSenderImpl>(
      loop, endpoint, std::move(*target), options, identity, std::move(tls)));
}

}  // namespace cistern::transport
