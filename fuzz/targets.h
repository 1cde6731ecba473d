// The fuzz targets' entry points, shared by the libFuzzer binaries (fuzz/fuzzer.cc,
// built with clang under RINGPROXY_FUZZ) and by tests/fuzz_regression_test.cc, which
// replays the seed corpora and every minimized finding under ctest with any compiler.
//
// Each takes one input and returns "" when every check held, or what went wrong (the
// fuzzer binary aborts with it, the test fails with it). A crash or a sanitizer report
// inside is a finding too. Inputs are independent: no state survives from one to the
// next that could change what the next does, so a finding replays alone.
//
// Thread: any, one at a time (the harnesses keep per-process sockets and temp files).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace ringproxy::fuzz {

// Findings so far (each input in tests/regressions/TARGET/, replayed by
// tests/fuzz_regression_test.cc): the proxy's own error answers to a HEAD carried a
// body; a backend's 101 without an Upgrade protocol was tunnelled (the client, reading
// no upgrade, took the tunnel's bytes as responses); admin JSON with a number beyond a
// double was a 500; --check passed a ring too large to build. Open: fuzz_h2_frames, a
// run of 17 empty DATA frames, then a frame whose length is wrong for its type, in one
// read, aborts the process in nghttp2 (an assertion after server_session.cc's
// terminate_session from inside on_frame_recv); a :path with a byte over 0x7f goes to
// the node raw in the HTTP/1 request line, where HTTP/1 from a client is refused 400.
// fuzz_h2_client (both fixed in http/h2/client_session): a :status of "003" (nghttp2
// checks three digits, not the range) was taken for an interim head, where nghttp2
// takes it for the final one; ClientStream::ended() and remote_ended() said "all given"
// while DATA that came during a pin waited behind the pinned bytes.

// The input is what a client sends to the proxy (then it half-closes). A real Worker
// runs on this thread with a loopback backend on the same loop (proxy_harness.cc).
// Checked: what reaches the backend parses, under llhttp's strict mode, as whole
// requests that the client sent, in order, with the same bodies (no smuggling); the
// worker's loop ends with every handle closed.
std::string request(std::span<const uint8_t> input);

// The input is what the backend answers to a fixed request (a GET, a HEAD or an
// Upgrade, chosen by the input's size). Checked: what the client receives parses as
// HTTP responses under llhttp's strict mode; the loop ends with every handle closed.
std::string response(std::span<const uint8_t> input);

// h1::ResponseParser alone (http/h1/response_parser.h). The first byte: bit 0 the
// request was a HEAD, bit 1 chunked bodies decoded, bit 2 the server closes after the
// input (finish()), bit 3 a 256-byte head limit; the next two seed the reads' sizes;
// the rest is what the server sends. Checked, read in reads of random sizes and read
// whole: execute never consumes more than it was given nor hands out more body bytes
// than it consumed, passes bytes through unchanged unless decoding, keeps heads' views
// inside the buffer, completes a close-delimited body only at finish(); both ways read
// the same heads, the same body and the same outcome.
std::string h1_response(std::span<const uint8_t> input);

// gossip/codec decode (and encode: an accepted packet re-encodes to the same bytes), and
// the authenticated envelope of gossip/udp_transport through a real UDP socket. The
// first byte selects; see targets.cc.
std::string gossip_decode(std::span<const uint8_t> input);

// The config loader on the input as TOML text: every error carries the file, a line
// and a column; a config it accepts builds a routing.
std::string config(std::span<const uint8_t> input);

// An admin request, "METHOD TARGET\n" then the body, through the admin API's handler
// on a Server loaded from a fixed config (never run). Checked: a JSON answer with a
// status the SPEC allows; errors as {"error": "..."}.
std::string admin(std::span<const uint8_t> input);

// HTTP/2 from a client (h2_frames.cc): the input is what the client sends after the
// 24-byte preface (h2c, prior knowledge), in 1 to 3 writes, each once the last is
// quiescent; then the client half-closes, sometimes after the worker drains, or (one
// input in 8) waits with 5 ms timeouts for the server to end the connection by itself,
// which it must within 2 s. A real Worker and the loopback HTTP/1 backend of
// proxy_harness.cc. Checked: every HTTP/2 stream is freed (ClientConn::h2_streams_out)
// and no request is left in flight; every request the backend read is one a stream
// sent (:method, :path, body, decoded with nghttp2's HPACK inflater); the server's
// output is well-formed frames (SETTINGS first, nothing on a stream after the server
// ended it); every handle is closed.
std::string h2_frames(std::span<const uint8_t> input);

// HTTP/2 from a node (h2_client.cc): two option bytes, then what a node sends to our
// h2::ClientSession (http/h2/client_session.h) after it submitted a GET, a POST with a
// body and a gRPC-like POST (te: trailers), in 1 to 4 reads; stream handlers drive the
// session as proxy/exchange_h2.cc does (pinned body bytes, deadlines, clients going
// away, unprocessed streams submitted again) and its Wire does what H2Upstream does (a
// close from inside the session's callbacks, the session freed at the end of the turn).
// Checked: every request ends exactly once and nothing is heard of a stream after it
// was let go; a final head is taken once and never changes; body bytes taken are a
// prefix of what the node sent on the stream, never more than a window held; what the
// session wrote is well-formed (HEADERS only for requests submitted, DATA only the
// request's body, never after our END_STREAM or RST_STREAM) and bounded.
std::string h2_client(std::span<const uint8_t> input);

// A TLS listener's first bytes (tls_server.cc): the input is what a client sends to a
// server-side TlsTransport (a fixed certificate) before it half-closes. Checked: the
// transport keeps its contract (one end, on_closed once, nothing after it), a failed
// handshake says how, plain HTTP is answered in plaintext, every handle is closed.
std::string tls_server(std::span<const uint8_t> input);

// A DNS answer (dns_answer.cc): net/dns_resolver.h's answer_min_ttl() and c-ares's A,
// AAAA and SRV parsers on the input. Checked: no crash, and a TTL only where a record fits.
std::string dns_answer(std::span<const uint8_t> input);

// [[route]]s and requests (SPEC "Several tiers"): lines "HOST PATH_PREFIX" ("-" for
// empty) up to an empty line, then "HOST_FIELD TARGET". Checked: match_route (the bit-set
// index of proxy/backends.h) picks, for every request, the first route in file order
// that a plain scan finds.
std::string route_match(std::span<const uint8_t> input);

}  // namespace ringproxy::fuzz
