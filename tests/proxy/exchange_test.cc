// The Exchange without the server codec: a real Worker on the test's thread (as
// tests/proxy/worker_test.cc runs one), a real node on loopback, and a fake Downstream
// in place of the client connection, so that what the exchange asks of the client side
// is seen call by call.
#include "proxy/exchange.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "http/h2/client_session.h"
#include "net/transport.h"
#include "proxy/worker.h"
#include "tests/support/loopback.h"

namespace ringproxy {
namespace {

// A node: one answer on one connection, then it waits for the proxy to close it.
using OneAnswerNode = test::OneAnswerServer;

// The client side as the exchange sees it. The request is bodiless: its end is passed
// as soon as the exchange can take body bytes.
class FakeDownstream final : public h1::Downstream {
 public:
  Worker* worker = nullptr;
  Exchange* exchange = nullptr;
  bool queue_first_send = false;  // the first send is kQueued, until drained()
  std::string received;           // every byte sent to the client
  int sends = 0;
  int sends_while_pending = 0;
  int done_calls = 0;
  int error_status = 0;
  bool pending = false;
  bool request_ended = false;
  // An HTTP/2 node's session was inside nghttp2 (its callbacks on the stack) when the
  // exchange called here: h2::ClientStream::Handler's contract says it never is.
  bool called_inside_nghttp2 = false;

  // The client took what was queued: as the codec's on_write_done does.
  void drained() {
    pending = false;
    exchange->on_downstream_drained();
  }

  void note_caller() {
    if (h2::ClientSession::any_inside_nghttp2()) called_inside_nghttp2 = true;
  }

  int send(uv_buf_t* bufs, unsigned count) override {
    note_caller();
    if (pending) ++sends_while_pending;
    ++sends;
    for (unsigned i = 0; i < count; ++i) received.append(bufs[i].base, bufs[i].len);
    if (queue_first_send && sends == 1) {
      pending = true;
      return Transport::kQueued;
    }
    return Transport::kWritten;
  }
  bool send_pending() const override { return pending; }
  std::string error_cause;
  void respond_error(int status, std::string_view, std::string_view cause) override {
    note_caller();
    error_status = status;
    error_cause = cause;
    exchange->abort();
    exchange->on_answered(status, cause);
    finish();
  }
  void respond_own(std::string&, bool) override {}
  bool finish_request_early() override { return true; }
  void response_done(bool) override {
    note_caller();
    ++done_calls;
    finish();
  }
  void resume_body() override {
    if (request_ended || !exchange->ready_for_body()) return;
    request_ended = true;
    exchange->on_body(nullptr, 0, /*end=*/true);
  }
  void start_tunnel() override {}
  void tunnel_upstream_done() override {}
  void abort() override { finish(); }
  bool closing() const override { return false; }
  bool close_requested() const override { return false; }
  std::string_view client_ip() const override { return "127.0.0.1"; }
  const TlsTransport* tls() const override { return nullptr; }
  std::string_view client_subject() const override { return {}; }

 private:
  void finish() { worker->notify_drain(); }
};

std::shared_ptr<const Routing> routing_to(uint16_t port, bool named = false,
                                          BackendProtocol protocol = BackendProtocol::kHttp1) {
  auto config = std::make_shared<Config>();
  // named: a node by DNS name that has not resolved (no address to connect to).
  config->backends.push_back({"node", Address{named ? "cache.test" : "127.0.0.1", port, false, named}, 1, false, ""});
  config->backends.back().protocol = protocol;
  std::string error;
  auto routing = build_routing(config, nullptr, 1, 1, &error);
  EXPECT_NE(routing, nullptr) << error;
  return routing;
}

// One GET through an Exchange on a Worker, the fake as its client side; returns when
// the worker has drained.
struct OneGet {
  Shared shared;
  std::unique_ptr<Worker> worker;
  FakeDownstream down;
  std::unique_ptr<Exchange> exchange;
  BufferPool buffers;
  IoBuffer in;
  h1::RequestParser req;
  uv_timer_t start_timer{};
  uv_timer_t drain_timer{};

  explicit OneGet(uint16_t port, bool named = false, BackendProtocol protocol = BackendProtocol::kHttp1) {
    shared.routing = routing_to(port, named, protocol);
    worker = std::make_unique<Worker>(0, shared, test::bound_loopback_socket(SOCK_NONBLOCK | SOCK_CLOEXEC));
    EXPECT_EQ(worker->init(), 0);
    down.worker = worker.get();
    exchange = std::make_unique<Exchange>(*worker, down);
    down.exchange = exchange.get();
    buffers.acquire(in);
    const std::string head = "GET /k/1 HTTP/1.1\r\nHost: cache.example\r\n\r\n";
    std::memcpy(in.end_ptr(), head.data(), head.size());
    in.produced(head.size());
    EXPECT_EQ(req.read_head(in, 16384, true, false), h1::RequestParser::HeadStep::kHead);
  }
  ~OneGet() { buffers.release(in); }

  // The request starts once the worker runs (it takes its routing then).
  void go() {
    uv_timer_init(worker->loop(), &start_timer);
    start_timer.data = this;
    uv_timer_start(
        &start_timer,
        [](uv_timer_t* t) {
          auto* r = static_cast<OneGet*>(t->data);
          r->exchange->begin();
          r->exchange->on_request(r->req.head(), "10.0.0.7");
          uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
        },
        0, 0);
    EXPECT_EQ(worker->run(), 0) << "handles left open";
  }
};

TEST(Exchange, RelaysTheNodesAnswerAndEndsOnce) {
  OneAnswerNode node("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Node: a\r\n\r\nhello");
  OneGet run(node.port());
  run.go();
  EXPECT_EQ(run.down.done_calls, 1);
  EXPECT_EQ(run.down.error_status, 0);
  EXPECT_EQ(run.down.received, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Node: a\r\n\r\nhello");
}

// Backpressure down: while a response write waits in the client's transport, the
// exchange sends nothing more (it stops reading the node), and goes on once drained.
TEST(Exchange, ANamedNodeWithoutAnAddressGoesToTheNextNodeAndIsNotItsFailure) {
  // The control thread marks such a node down before publishing; a request routed to it
  // in between goes to the next node (here there is none: a 502 with the cause), and the
  // node is not charged with a failure (passive health must not eject a node as its
  // name resolves).
  OneGet get(9, /*named=*/true);
  get.go();
  EXPECT_EQ(get.down.error_status, 502);
  EXPECT_NE(get.down.error_cause.find("no address (cache.test did not resolve) at node node"), std::string::npos)
      << get.down.error_cause;
  const NodeState& node = *get.shared.routing->default_pool().backends[0].state;
  EXPECT_EQ(node.failures(), 0u);
  EXPECT_EQ(node.consecutive_failures.load(), 0u);
}

TEST(Exchange, AQueuedSendStopsTheNodeUntilDrained) {
  const std::string body(512 * 1024, 'b');
  OneAnswerNode node("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  OneGet run(node.port());
  run.down.queue_first_send = true;
  // The client takes the first write a while later: long enough for the node's bytes
  // to wait in the socket, were the exchange to read them.
  uv_timer_init(run.worker->loop(), &run.drain_timer);
  run.drain_timer.data = &run;
  uv_timer_start(
      &run.drain_timer,
      [](uv_timer_t* t) {
        auto* r = static_cast<OneGet*>(t->data);
        if (!r->down.pending) return;  // not yet queued: look again
        uv_timer_stop(t);
        r->down.drained();
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      },
      20, 20);
  run.go();
  EXPECT_EQ(run.down.sends_while_pending, 0);
  EXPECT_GT(run.down.sends, 1);
  EXPECT_EQ(run.down.done_calls, 1);
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  ASSERT_EQ(run.down.received.size(), head.size() + body.size());
  EXPECT_EQ(run.down.received.substr(0, head.size()), head);
  EXPECT_TRUE(run.down.received.compare(head.size(), body.size(), body) == 0);
}

// The head as the node gets it: the proxy's version and forwarded fields, the client's
// address in X-Forwarded-For.
TEST(Exchange, SendsTheRewrittenHead) {
  OneAnswerNode node("HTTP/1.1 204 No Content\r\n\r\n");
  OneGet run(node.port());
  run.go();
  node.join();
  EXPECT_EQ(run.down.done_calls, 1);
  EXPECT_EQ(run.down.received, "HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_EQ(node.head().substr(0, node.head().find("\r\n") + 2), "GET /k/1 HTTP/1.1\r\n");
  EXPECT_NE(node.head().find("\r\nHost: cache.example\r\n"), std::string::npos) << node.head();
  EXPECT_NE(node.head().find("\r\nX-Forwarded-For: 10.0.0.7\r\n"), std::string::npos) << node.head();
  EXPECT_NE(node.head().find("\r\nX-Forwarded-Host: cache.example\r\n"), std::string::npos) << node.head();
}

// ---- an h2c node closing its connection as its last stream ends ----

std::string h2_frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  f += static_cast<char>(payload.size() >> 16);
  f += static_cast<char>(payload.size() >> 8);
  f += static_cast<char>(payload.size());
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  for (int shift = 24; shift >= 0; shift -= 8) f += static_cast<char>(stream >> shift);
  f.append(payload);
  return f;
}

// What an h2c node sends for the proxy's one request (stream 1), in one write: its
// SETTINGS, the ACK of ours, then the response (HPACK: :status 200 from the static
// table, content-length: 5 as a literal) and GOAWAY(NO_ERROR, last stream 1), in the
// order given.
std::string h2_answer(bool goaway_first) {
  using namespace std::string_view_literals;
  const std::string response = h2_frame(1, 0x4, 1, "\x88\x0f\x0d\x01" "5"sv) + h2_frame(0, 0x1, 1, "hello");
  const std::string goaway = h2_frame(7, 0, 0, std::string_view("\0\0\0\x01\0\0\0\0", 8));
  return h2_frame(4, 0, 0, {}) + h2_frame(4, 0x1, 0, {}) + (goaway_first ? goaway + response : response + goaway);
}

// The node's GOAWAY leaves its connection with no stream: H2Upstream closes it from
// inside nghttp2's callbacks (on_frame_recv of the GOAWAY, or on_stream_close of the
// last stream when the GOAWAY came first). The connection and its session are freed at
// the end of the loop's turn (its reaper), never under nghttp2 (the ASan build of this
// test is the check); and the exchange hears of its stream only once nghttp2 has
// returned, as h2::ClientStream::Handler promises (before, the close ran the streams'
// handlers from inside the callback: the response went to the client with nghttp2 on
// the stack).
void expect_relayed_outside_nghttp2(bool goaway_first) {
  OneAnswerNode node(h2_answer(goaway_first));
  OneGet run(node.port(), false, BackendProtocol::kH2c);
  run.go();
  node.join();
  EXPECT_EQ(run.down.done_calls, 1);
  EXPECT_EQ(run.down.error_status, 0) << run.down.error_cause;
  EXPECT_EQ(run.down.received.substr(0, 17), "HTTP/1.1 200 OK\r\n") << run.down.received;
  EXPECT_TRUE(run.down.received.ends_with("\r\n\r\nhello")) << run.down.received;
  EXPECT_FALSE(run.down.called_inside_nghttp2);
  EXPECT_EQ(node.head().substr(0, 24), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
}

TEST(Exchange, AnH2NodesGoawayAfterTheLastResponseClosesOutsideNghttp2) { expect_relayed_outside_nghttp2(false); }

TEST(Exchange, AnH2NodesLastStreamEndingAfterItsGoawayClosesOutsideNghttp2) { expect_relayed_outside_nghttp2(true); }

}  // namespace
}  // namespace ringproxy
