#include "net/dns_resolver.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <cstring>
#include <utility>

#include "net/tcp_transport.h"

namespace ringproxy {

const char* to_string(DnsAnswer::Status status) {
  switch (status) {
    case DnsAnswer::Status::kOk:
      return "ok";
    case DnsAnswer::Status::kEmpty:
      return "empty";
    case DnsAnswer::Status::kNotFound:
      return "nxdomain";
    case DnsAnswer::Status::kServFail:
      return "servfail";
    case DnsAnswer::Status::kRefused:
      return "refused";
    case DnsAnswer::Status::kTimeout:
      return "timeout";
    case DnsAnswer::Status::kMalformed:
      return "malformed";
    case DnsAnswer::Status::kError:
      return "error";
  }
  return "error";
}

namespace {

uint16_t be16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t be32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 |
         p[3];
}

// The offset just past the (maybe compressed) name at `at`, or nullopt. A pointer ends
// the name where it stands; what it points to is not followed (only skipped over here).
std::optional<size_t> skip_name(const unsigned char* msg, size_t len, size_t at) {
  for (int labels = 0; labels < 128; ++labels) {  // 255 bytes at most: 127 one-byte labels
    if (at >= len) return std::nullopt;
    const unsigned char l = msg[at];
    if (l == 0) return at + 1;
    if ((l & 0xC0) == 0xC0) {
      if (at + 2 > len) return std::nullopt;
      return at + 2;
    }
    if ((l & 0xC0) != 0) return std::nullopt;  // 0x40, 0x80: reserved label types
    at += 1 + l;
  }
  return std::nullopt;
}

DnsAnswer::Status status_of(int ares_status) {
  switch (ares_status) {
    case ARES_SUCCESS:
      return DnsAnswer::Status::kOk;
    case ARES_ENODATA:
      return DnsAnswer::Status::kEmpty;
    case ARES_ENOTFOUND:
      return DnsAnswer::Status::kNotFound;
    case ARES_ESERVFAIL:
      return DnsAnswer::Status::kServFail;
    case ARES_EREFUSED:
    case ARES_ENOTIMP:
      return DnsAnswer::Status::kRefused;
    case ARES_ETIMEOUT:
      return DnsAnswer::Status::kTimeout;
    case ARES_EBADRESP:
    case ARES_EFORMERR:
      return DnsAnswer::Status::kMalformed;
    default:
      return DnsAnswer::Status::kError;
  }
}

// c-ares's sockets, made and used as c-ares would (non-blocking, close-on-exec), with
// the UDP reads seen on their way (DnsResolver::recv_from).
ares_socket_t open_socket(int family, int type, int protocol, void* /*data*/) {
  return ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
}
int close_socket(ares_socket_t fd, void* /*data*/) { return ::close(fd); }
int connect_socket(ares_socket_t fd, const sockaddr* to, ares_socklen_t len, void* /*data*/) {
  return ::connect(fd, to, len);
}
ares_ssize_t send_vector(ares_socket_t fd, const iovec* vec, int count, void* /*data*/) {
  return ::writev(fd, vec, count);
}

// "IP:PORT" or "[IPV6]:PORT" of a datagram's sender; "the resolver" when unknown.
std::string sender_text(const sockaddr* from) {
  char ip[INET6_ADDRSTRLEN];
  TcpTransport::ip_text(from, ip, sizeof ip);
  if (ip[0] == '\0') return "the resolver";
  const bool v6 = from->sa_family == AF_INET6;
  const uint16_t port = v6 ? reinterpret_cast<const sockaddr_in6*>(from)->sin6_port
                           : reinterpret_cast<const sockaddr_in*>(from)->sin_port;
  return (v6 ? "[" + std::string(ip) + "]" : std::string(ip)) + ":" + std::to_string(ntohs(port));
}

const char* rcode_name(int rcode) {
  switch (rcode) {
    case ns_r_servfail:
      return "SERVFAIL";
    case ns_r_refused:
      return "REFUSED";
    default:
      return "NOTIMP";
  }
}

constexpr int kMaxAddresses = 256;  // A or AAAA records read from one answer

// An A or AAAA answer's addresses as text, through c-ares's parser for that type
// (`parse`, whose TTL records hold the address in `address`). c-ares's status.
template <class Ttl, class Parse, class Address>
int read_addresses(Parse parse, Address Ttl::*address, int family, const unsigned char* abuf, int alen,
                   std::vector<std::string>* out) {
  Ttl ttls[kMaxAddresses];
  int n = kMaxAddresses;
  const int rc = parse(abuf, alen, nullptr, ttls, &n);
  for (int i = 0; rc == ARES_SUCCESS && i < n; ++i) {
    char text[INET6_ADDRSTRLEN];
    inet_ntop(family, &(ttls[i].*address), text, sizeof text);
    out->emplace_back(text);
  }
  return rc;
}

}  // namespace

std::optional<FailedQuestion> failed_question(const unsigned char* msg, size_t len) {
  if (len < 12 || (msg[2] & 0x80) == 0) return std::nullopt;  // not a response
  const int rcode = msg[3] & 0x0F;
  if (rcode != ns_r_servfail && rcode != ns_r_refused && rcode != ns_r_notimpl) return std::nullopt;
  if (be16(msg + 4) == 0) return std::nullopt;  // no question to match
  // The question's name: nothing precedes it, so it is never compressed.
  FailedQuestion out;
  out.rcode = rcode;
  size_t at = 12;
  while (true) {
    if (at >= len || out.name.size() > 255) return std::nullopt;
    const unsigned char l = msg[at];
    if (l == 0) break;
    if ((l & 0xC0) != 0 || at + 1 + l > len) return std::nullopt;
    if (!out.name.empty()) out.name += '.';
    out.name.append(reinterpret_cast<const char*>(msg + at + 1), l);
    at += 1 + l;
  }
  if (at + 1 + 4 > len) return std::nullopt;  // the root label, type, class
  out.type = be16(msg + at + 1);
  return out;
}

std::optional<uint32_t> answer_min_ttl(const unsigned char* msg, size_t len) {
  if (len < 12) return std::nullopt;
  const uint16_t questions = be16(msg + 4);
  const uint16_t answers = be16(msg + 6);
  size_t at = 12;
  for (uint16_t i = 0; i < questions; ++i) {
    const auto end = skip_name(msg, len, at);
    if (!end || *end + 4 > len) return std::nullopt;
    at = *end + 4;  // type, class
  }
  std::optional<uint32_t> ttl;
  for (uint16_t i = 0; i < answers; ++i) {
    const auto end = skip_name(msg, len, at);
    if (!end || *end + 10 > len) return std::nullopt;
    const uint32_t raw_ttl = be32(msg + *end + 4);
    const uint32_t record_ttl = (raw_ttl & 0x80000000u) != 0 ? 0 : raw_ttl;  // RFC 2181 8: read as zero
    const uint16_t rdlength = be16(msg + *end + 8);
    if (*end + 10 + rdlength > len) return std::nullopt;
    at = *end + 10 + rdlength;
    ttl = ttl ? std::min(*ttl, record_ttl) : record_ttl;
  }
  return ttl;
}

// One query in flight: its callback, and the answer when c-ares gave it from inside
// query() (handed over from the loop, as the contract says).
struct DnsResolver::Request {
  DnsResolver* resolver;
  Type type;
  Callback done;
  std::string key;  // question_key: its entry in failures_
};

std::string DnsResolver::question_key(std::string_view name, int rrtype) {
  if (name.ends_with('.')) name.remove_suffix(1);
  std::string key(name);
  for (char& c : key) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  key += '/';
  key += std::to_string(rrtype);
  return key;
}

void DnsResolver::note_answer(const unsigned char* msg, size_t len, const sockaddr* from) {
  if (failures_.empty()) return;
  const auto failed = failed_question(msg, len);
  if (!failed) return;
  auto it = failures_.find(question_key(failed->name, failed->type));
  if (it == failures_.end()) return;  // no such question pending: not ours to note
  it->second.rcode = failed->rcode;
  it->second.server = sender_text(from);
}

ares_ssize_t DnsResolver::recv_from(ares_socket_t fd, void* buf, size_t len, int flags, sockaddr* from,
                                    ares_socklen_t* from_len, void* data) {
  const ssize_t n = ::recvfrom(fd, buf, len, flags, from, from_len);
  // c-ares passes `from` for UDP reads only; a TCP read may be part of a message.
  if (n > 0 && from != nullptr) {
    static_cast<DnsResolver*>(data)->note_answer(static_cast<const unsigned char*>(buf), static_cast<size_t>(n), from);
  }
  return n;
}

DnsResolver::~DnsResolver() {
  // close() must have run; a channel left would call back into a freed resolver.
  if (channel_ != nullptr) ares_destroy(channel_);
}

std::string DnsResolver::init(const std::vector<std::string>& servers, uint32_t timeout_ms) {
  static const int library = ares_library_init(ARES_LIB_INIT_ALL);  // once per process
  if (library != ARES_SUCCESS) return std::string("c-ares: ") + ares_strerror(library);
  ares_options opts{};
  opts.sock_state_cb = on_sock_state;
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(timeout_ms);
  opts.tries = 1;
  // (Not ARES_FLAG_NOCHECKRESP: it would also take answers to another question. A
  // SERVFAIL or REFUSED is tried at the next server, then reported.)
  const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  if (const int rc = ares_init_options(&channel_, &opts, mask); rc != ARES_SUCCESS) {
    channel_ = nullptr;
    return std::string("c-ares: ") + ares_strerror(rc);
  }
  if (!servers.empty()) {
    std::string csv;
    for (const std::string& s : servers) {
      if (!csv.empty()) csv += ',';
      csv += s;
    }
    if (const int rc = ares_set_servers_ports_csv(channel_, csv.c_str()); rc != ARES_SUCCESS) {
      ares_destroy(channel_);  // not half running: query() then answers "not running"
      channel_ = nullptr;
      return "dns.resolvers: " + std::string(ares_strerror(rc));
    }
  }
  static const ares_socket_functions kSockets = {open_socket, close_socket, connect_socket, recv_from, send_vector};
  ares_set_socket_functions(channel_, &kSockets, this);
  timer_ = new uv_timer_t{};  // freed by its close callback (close())
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  return {};
}

void DnsResolver::query(const std::string& name, Type type, Callback done) {
  if (channel_ == nullptr || closing_ || timer_ == nullptr) {
    // Not initialised (or init failed), or closing: nothing is asked, nothing answers.
    // A caller that queries before a successful init() gets no callback, as after close().
    return;
  }
  const int rrtype = type == Type::kSrv ? ns_t_srv : type == Type::kAaaa ? ns_t_aaaa : ns_t_a;
  auto* r = new Request{this, type, std::move(done), question_key(name, rrtype)};
  ++failures_[r->key].queries;
  ++pending_;
  in_query_ = true;
  ares_query(channel_, name.c_str(), ns_c_in, rrtype, on_answer, r);
  in_query_ = false;
  if (!deferred_.empty()) {
    uv_timer_start(timer_, on_timer, 0, 0);  // answered from inside: called back from the loop
    return;
  }
  arm_timer();
}

void DnsResolver::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<Request> r(static_cast<Request*>(arg));
  DnsResolver* self = r->resolver;
  --self->pending_;
  Failure failure;
  if (auto it = self->failures_.find(r->key); it != self->failures_.end()) {
    failure = it->second;
    if (--it->second.queries == 0) self->failures_.erase(it);
  }
  if (self->closing_ || status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) return;
  DnsAnswer a;
  a.status = status_of(status);
  const bool server_failed = status == ARES_ECONNREFUSED || status == ARES_ESERVFAIL || status == ARES_EREFUSED ||
                             status == ARES_ENOTIMP;
  if (server_failed && failure.rcode != 0) {
    // c-ares 1.18 says "could not contact" (ECONNREFUSED) here: say what was answered.
    a.status = failure.rcode == ns_r_servfail ? DnsAnswer::Status::kServFail : DnsAnswer::Status::kRefused;
    a.error = failure.server + " answered " + rcode_name(failure.rcode);
  }
  int parsed = ARES_SUCCESS;
  if (a.status == DnsAnswer::Status::kOk) {
    const size_t len = alen > 0 ? static_cast<size_t>(alen) : 0;
    if (const auto ttl = answer_min_ttl(abuf, len)) a.ttl_s = *ttl;
    parsed = ARES_EBADRESP;
    if (r->type == Type::kSrv) {
      ares_srv_reply* srv = nullptr;
      parsed = ares_parse_srv_reply(abuf, alen, &srv);
      for (ares_srv_reply* s = srv; s != nullptr; s = s->next) {
        a.srv.push_back({s->priority, s->weight, s->port, s->host != nullptr ? s->host : ""});
      }
      if (srv != nullptr) ares_free_data(srv);
    } else if (r->type == Type::kA) {
      parsed = read_addresses<ares_addrttl>(ares_parse_a_reply, &ares_addrttl::ipaddr, AF_INET, abuf, alen, &a.addresses);
    } else {
      parsed = read_addresses<ares_addr6ttl>(ares_parse_aaaa_reply, &ares_addr6ttl::ip6addr, AF_INET6, abuf, alen,
                                             &a.addresses);
    }
    if (parsed != ARES_SUCCESS) {
      // No record of the type (ENODATA) is an empty answer; anything else but a
      // shortage of memory (EBADRESP, EBADNAME for a name that loops, ...) is malformed.
      a.status = status_of(parsed);
      if (a.status != DnsAnswer::Status::kEmpty && parsed != ARES_ENOMEM) a.status = DnsAnswer::Status::kMalformed;
    } else if (a.addresses.empty() && a.srv.empty()) {
      a.status = DnsAnswer::Status::kEmpty;
    }
  }
  if (a.status != DnsAnswer::Status::kOk) {
    if (!a.error.empty()) {
      // said above
    } else if (status != ARES_SUCCESS) {
      a.error = ares_strerror(status);
    } else if (a.status == DnsAnswer::Status::kEmpty) {
      a.error = "no records of the type asked for";
    } else {
      a.error = std::string("the answer does not parse: ") + ares_strerror(parsed);
    }
    a.addresses.clear();
    a.srv.clear();
  }
  if (self->in_query_) {
    self->deferred_.push_back({std::move(r->done), std::move(a)});
    return;
  }
  r->done(std::move(a));
}

void DnsResolver::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<DnsResolver*>(data);
  auto it = self->polls_.find(fd);
  if (!readable && !writable) {
    // c-ares closes the socket right after: stop watching it first.
    if (it == self->polls_.end()) return;
    uv_close(reinterpret_cast<uv_handle_t*>(it->second),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    self->polls_.erase(it);
    return;
  }
  uv_poll_t* p;
  if (it == self->polls_.end()) {
    p = new uv_poll_t{};  // freed by its close callback
    if (uv_poll_init_socket(self->loop_, p, fd) != 0) {
      delete p;
      return;  // the query times out
    }
    p->data = self;
    self->polls_.emplace(fd, p);
  } else {
    p = it->second;
  }
  uv_poll_start(p, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), on_poll);
}

void DnsResolver::on_poll(uv_poll_t* p, int status, int events) {
  auto* self = static_cast<DnsResolver*>(p->data);
  if (self->closing_) return;
  ares_socket_t fd = ARES_SOCKET_BAD;
  for (const auto& [sock, poll] : self->polls_) {
    if (poll == p) fd = sock;
  }
  if (fd == ARES_SOCKET_BAD) return;
  // An error on the socket: let c-ares read it and find out.
  const bool readable = status < 0 || (events & UV_READABLE) != 0;
  const bool writable = status < 0 || (events & UV_WRITABLE) != 0;
  self->in_process_ = true;
  ares_process_fd(self->channel_, readable ? fd : ARES_SOCKET_BAD, writable ? fd : ARES_SOCKET_BAD);
  self->in_process_ = false;
  if (self->closing_) {
    self->finish_close();  // a callback closed the resolver: c-ares is done with the channel now
    return;
  }
  self->arm_timer();
}

void DnsResolver::on_timer(uv_timer_t* t) {
  auto* self = static_cast<DnsResolver*>(t->data);
  if (self->closing_) return;
  // Answers given from inside query(), in order.
  std::vector<Deferred> ready;
  ready.swap(self->deferred_);
  for (Deferred& d : ready) {
    d.done(std::move(d.answer));
    if (self->closing_) return;
  }
  if (self->channel_ != nullptr) {
    self->in_process_ = true;
    ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    self->in_process_ = false;
    if (self->closing_) {
      self->finish_close();
      return;
    }
  }
  self->arm_timer();
}

void DnsResolver::arm_timer() {
  if (closing_ || timer_ == nullptr || channel_ == nullptr) return;
  if (!deferred_.empty()) {
    uv_timer_start(timer_, on_timer, 0, 0);
    return;
  }
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
    uv_timer_stop(timer_);  // nothing pending
    return;
  }
  const uint64_t ms = static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec + 999) / 1000;
  uv_timer_start(timer_, on_timer, ms, 0);
}

void DnsResolver::close() {
  if (closing_) return;
  closing_ = true;
  deferred_.clear();
  // From a callback inside ares_process_fd: c-ares still uses the channel after the
  // callback returns; the destruction waits until it has (on_poll, on_timer).
  if (!in_process_) finish_close();
}

void DnsResolver::finish_close() {
  if (channel_ != nullptr) {
    ares_destroy(channel_);  // pending queries end with ARES_EDESTRUCTION, dropped; sockets closed
    channel_ = nullptr;
  }
  for (auto& [fd, p] : polls_) {
    uv_close(reinterpret_cast<uv_handle_t*>(p), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  }
  polls_.clear();
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
}

}  // namespace ringproxy
