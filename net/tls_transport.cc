#include "net/tls_transport.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>

namespace ringproxy {

namespace {

// SSL_get_error() reads OpenSSL's error queue, which must be empty before the call it
// judges. ERR_clear_error() empties it by walking all its slots, 1,160 instructions a
// request at two calls per record (bench/cost TLS=1); the queue is nearly always empty
// already, which a peek tells for a few.
inline void clear_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// Buffers of a write up to this size together are encrypted as one record: a response
// head and its body in one AEAD pass and one record header instead of two (OpenSSL
// makes a record per SSL_write).
constexpr size_t kCoalesceMax = 16384;

}  // namespace

// The BIO under each SSL: reads take ciphertext from the TCP transport's buffer, writes
// append to the transport's output. Made once per process.
struct TlsBio {
  static BIO_METHOD* method() {
    static BIO_METHOD* const m = [] {
      BIO_METHOD* b = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringproxy transport");
      BIO_meth_set_write_ex(b, write_ex);
      BIO_meth_set_read_ex(b, read_ex);
      BIO_meth_set_ctrl(b, ctrl);
      BIO_meth_set_create(b, [](BIO* bio) {
        BIO_set_init(bio, 1);
        return 1;
      });
      return b;
    }();
    return m;
  }

  static int write_ex(BIO* b, const char* data, size_t len, size_t* written) {
    auto* t = static_cast<TlsTransport*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    (t->tcp_writing_ ? t->next_ : t->out_).append(data, len);
    *written = len;
    return 1;
  }

  static int read_ex(BIO* b, char* data, size_t len, size_t* read) {
    auto* t = static_cast<TlsTransport*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    IoBuffer& in = t->tcp_.buffer();
    const size_t n = std::min(len, in.size());
    *read = n;
    if (n == 0) {
      if (!t->tcp_eof_) BIO_set_retry_read(b);  // more to come: OpenSSL says WANT_READ
      return 0;
    }
    std::memcpy(data, in.begin_ptr(), n);
    in.consume(n);
    if (in.size() == 0) in.clear();
    return 1;
  }

  static long ctrl(BIO* b, int cmd, long, void*) {
    auto* t = static_cast<TlsTransport*>(BIO_get_data(b));
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        return 1;  // output is sent by the transport, after each OpenSSL call
      case BIO_CTRL_PENDING:
        return static_cast<long>(t->tcp_.buffer().size());
      case BIO_CTRL_EOF:
        return t->tcp_eof_ && t->tcp_.buffer().size() == 0 ? 1 : 0;
      default:
        return 0;
    }
  }
};

TlsTransport::TlsTransport(BufferPool& buffers, Transport::Handler& handler)
    : buffers_(buffers), handler_(handler), tcp_(buffers, *this) {}

TlsTransport::~TlsTransport() {
  if (counted_) buffers_.tls_closed();
  SSL_free(ssl_);
  buffers_.release(in_);
}

int TlsTransport::init(Poller& poller) {
  poller_ = &poller;
  tcp_.init(poller);
  uv_timer_init(poller.loop(), &timer_);
  timer_.data = this;
  open_handles_ = 3;  // tcp_, timer_, and this socket's retirement from the poller
  return 0;
}

int TlsTransport::open_server(int fd, bool nodelay_inherited, std::shared_ptr<const ServerTlsContext> context,
                              uint32_t handshake_timeout_ms) {
  if (poller_ == nullptr || ssl_ != nullptr || closing_) return UV_EINVAL;
  SSL* ssl = context->new_ssl();
  if (ssl == nullptr) return UV_ENOMEM;
  BIO* bio = BIO_new(TlsBio::method());
  if (bio == nullptr) {
    SSL_free(ssl);
    return UV_ENOMEM;
  }
  const int rc = tcp_.open(fd, nodelay_inherited);
  if (rc < 0) {
    BIO_free(bio);
    SSL_free(ssl);
    return rc;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl, bio, bio);  // one reference, both directions
  ssl_ = ssl;
  buffers_.tls_opened();
  counted_ = true;
  context_ = std::move(context);
  tcp_.start_reading();  // the handshake reads whatever the codec does
  uv_timer_start(&timer_, on_handshake_timer, handshake_timeout_ms, 0);
  return 0;
}

int TlsTransport::connect_client(const sockaddr* addr, std::shared_ptr<const ClientTlsContext> context,
                                 std::string_view name, TlsSessionCache* cache, uint32_t handshake_timeout_ms,
                                 std::string_view alpn) {
  if (poller_ == nullptr || ssl_ != nullptr || closing_) return UV_EINVAL;
  SSL* ssl = context->new_ssl(name, cache);
  if (ssl == nullptr) return UV_ENOMEM;
  if (!alpn.empty() &&
      SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(alpn.data()), static_cast<unsigned>(alpn.size())) != 0) {
    SSL_free(ssl);
    return UV_ENOMEM;
  }
  BIO* bio = BIO_new(TlsBio::method());
  if (bio == nullptr) {
    SSL_free(ssl);
    return UV_ENOMEM;
  }
  const int rc = tcp_.connect(addr);
  if (rc < 0) {
    BIO_free(bio);
    SSL_free(ssl);
    return rc;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl, bio, bio);
  ssl_ = ssl;
  buffers_.tls_opened();
  counted_ = true;
  client_ = true;
  client_context_ = std::move(context);
  if (handshake_timeout_ms > 0) uv_timer_start(&timer_, on_handshake_timer, handshake_timeout_ms, 0);
  return 0;
}

void TlsTransport::on_connect(int status) {
  if (closing_ || failed_) return;
  if (status < 0) {
    failed_ = true;
    uv_timer_stop(&timer_);
    handler_.on_connect(status);
    return;
  }
  tcp_.start_reading();  // the handshake's
  pump();                // our ClientHello
}

void TlsTransport::release_buffer() {
  if (in_.size() == 0) buffers_.release(in_);
  tcp_.release_buffer();
  if (buffers_.keep_tls_buffers()) return;
  // SSL_free_buffers keeps them (and says 0) while they hold bytes not yet processed.
  if (ssl_ != nullptr && handshake_done_) SSL_free_buffers(ssl_);
  if (!tcp_writing_) {
    // Our own send-side strings keep their largest size otherwise.
    std::string().swap(out_);
    std::string().swap(next_);
  }
  std::string().swap(plain_);
}

std::string_view TlsTransport::alpn() const {
  if (ssl_ == nullptr) return {};
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(p), len);
}

std::string_view TlsTransport::version() const { return handshake_done_ ? SSL_get_version(ssl_) : ""; }

std::string_view TlsTransport::cipher() const {
  const char* c = handshake_done_ ? SSL_get_cipher_name(ssl_) : nullptr;
  return c == nullptr ? std::string_view() : c;
}

bool TlsTransport::resumed() const { return handshake_done_ && SSL_session_reused(ssl_) == 1; }

std::string TlsTransport::client_subject() const {
  if (!handshake_done_) return {};
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr || SSL_get_verify_result(ssl_) != X509_V_OK) return {};
  BIO* mem = BIO_new(BIO_s_mem());
  if (mem == nullptr) return {};
  X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long len = BIO_get_mem_data(mem, &data);
  std::string out(data, static_cast<size_t>(len > 0 ? len : 0));
  BIO_free(mem);
  return out;
}

// ---------------------------------------------------------------------------------------
// Reading

int TlsTransport::enter_plaintext() {
  if (failure_ != Failure::kPlainHttp || closing_ || plaintext_) return UV_EINVAL;
  plaintext_ = true;
  failed_ = false;
  // What OpenSSL made of the request (an alert, if any) is not for an HTTP client, nor
  // are the request's bytes for anyone: the codec answers without them.
  if (!tcp_writing_) out_.clear();
  next_.clear();
  tcp_.buffer().clear();
  return 0;
}

int TlsTransport::start_reading() {
  if (plaintext_) {
    if (closing_) return 0;
    reading_ = true;
    return tcp_.start_reading();
  }
  if (reading_ || closing_ || failed_ || ended_) return 0;  // ended_: the end was told once
  if (ssl_ == nullptr) return UV_ENOTCONN;
  reading_ = true;
  if (handshake_done_) {
    tcp_.start_reading();
    // Plaintext OpenSSL holds, or ciphertext read below while we were stopped, raises
    // no event: decrypt it after this turn's events.
    // (SSL_pending, not SSL_has_pending: the latter also counts a record only partly
    // received, which more bytes must complete; deferring for it would spin the loop.)
    if (SSL_pending(ssl_) > 0 || tcp_.buffer().size() > 0 || tcp_eof_) poller_->defer(this);
  }
  return 0;
}

void TlsTransport::stop_reading() {
  reading_ = false;
  // Until the handshake is done the socket is read for it, whoever reads above.
  if (handshake_done_ || plaintext_) tcp_.stop_reading();
}

void TlsTransport::pass_plaintext(ssize_t nread) {
  if (nread < 0) {
    reading_ = false;
    handler_.on_read(nread);
    return;
  }
  IoBuffer& below = tcp_.buffer();
  buffers_.acquire(in_);
  const size_t n = std::min(below.size(), in_.free_space());
  std::memcpy(in_.end_ptr(), below.begin_ptr(), n);
  in_.produced(n);
  below.clear();  // what did not fit is dropped: only a lingering close reads here
  if (reading_) tcp_.start_reading();  // it stops by itself when its buffer fills
  if (n > 0) handler_.on_read(static_cast<ssize_t>(n));
}

void TlsTransport::on_read(ssize_t nread) {
  if (plaintext_) {
    if (!closing_) pass_plaintext(nread);
    return;
  }
  if (closing_ || failed_) return;
  if (nread == UV_ENOBUFS) {  // the buffer below is full: decrypting empties it
    pump();
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF) {
      if (!handshake_done_) {
        handshake_error_ = std::string(client_ ? "the server" : "the client") +
                           " reset the connection during the handshake (" + uv_err_name(static_cast<int>(nread)) + ")";
      }
      fail(static_cast<int>(nread), handshake_done_ ? Failure::kNone : Failure::kPeerClosed);
      return;
    }
    tcp_eof_ = true;
  }
  pump();
}

void TlsTransport::on_poll_ready() {
  if (!closing_ && !failed_) pump();
}

void TlsTransport::pump() {
  if (!handshake_done_) {
    clear_errors();
    const int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ && !tcp_eof_) {
        flush();  // our part of the handshake so far
        feed();
        return;
      }
      // The peer's FIN mid-handshake: OpenSSL 3 says SSL_ERROR_SSL ("unexpected eof
      // while reading") or SYSCALL. A TCP probe that connects and closes is no error.
      const unsigned long last = ERR_peek_last_error();
      const bool unexpected_eof =
          e == SSL_ERROR_SSL && ERR_GET_LIB(last) == ERR_LIB_SSL && ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
      if (tcp_eof_ && tcp_.buffer().size() == 0 && (e != SSL_ERROR_SSL || unexpected_eof)) {
        ERR_clear_error();
        if (client_) {
          handshake_error_ = "the server closed the connection during the handshake";
          fail(UV_ECONNRESET, Failure::kPeerClosed);
          return;
        }
        handshake_error_ = "the client closed the connection during the handshake";
        fail(UV_EOF, Failure::kPeerClosed);  // as a client that closes before its request: no error
        return;
      }
      const unsigned long first = ERR_peek_error();
      const bool plain_http = ERR_GET_LIB(first) == ERR_LIB_SSL && (ERR_GET_REASON(first) == SSL_R_HTTP_REQUEST ||
                                                                     ERR_GET_REASON(first) == SSL_R_HTTPS_PROXY_REQUEST);
      handshake_error_ = tls_error_text();
      if (const long verdict = SSL_get_verify_result(ssl_); client_ && verdict != X509_V_OK) {
        // OpenSSL's queue says only "certificate verify failed": the reason is here.
        handshake_error_ = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verdict);
      }
      if (handshake_error_.empty()) handshake_error_ = "handshake failed (SSL_get_error " + std::to_string(e) + ")";
      flush();  // the alert, when OpenSSL made one
      fail(UV_EPROTO, plain_http ? Failure::kPlainHttp : Failure::kError);
      return;
    }
    handshake_done_ = true;
    uv_timer_stop(&timer_);
    if (!reading_) tcp_.stop_reading();
    flush();  // the handshake's last flight (TLS 1.2's Finished, TLS 1.3's tickets)
    handler_.on_connect(0);
    if (closing_ || failed_) return;
  }
  // At most 64 records a turn, then after the other sockets (fairness).
  for (int turn = 0; turn < 64 && reading_; ++turn) {
    buffers_.acquire(in_);
    if (in_.free_space() == 0 && in_.size() == 0) in_.clear();
    const size_t room = in_.free_space();
    if (room == 0) {
      stop_reading();
      handler_.on_read(UV_ENOBUFS);
      return;
    }
    size_t got = 0;
    clear_errors();
    const int r = SSL_read_ex(ssl_, in_.end_ptr(), room, &got);
    if (r == 1) {
      in_.produced(got);
      if (in_.free_space() == 0) stop_reading();
      handler_.on_read(static_cast<ssize_t>(got));
      if (closing_) return;
      // Nothing left below nor decrypted inside OpenSSL: another SSL_read would only say so.
      if (tcp_.buffer().size() == 0 && !tcp_eof_ && SSL_pending(ssl_) == 0) break;
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ && !tcp_eof_) break;
    stop_reading();
    ended_ = true;
    if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_SYSCALL) {
      // close_notify, or the TCP FIN without it (SSL_OP_IGNORE_UNEXPECTED_EOF): the end
      // of the stream either way (the HTTP framing above tells a truncated message apart).
      handler_.on_read(UV_EOF);
    } else {
      broken_ = true;  // a protocol error: OpenSSL has marked the session not resumable
      flush();
      handler_.on_read(UV_EPROTO);
    }
    return;
  }
  if (reading_ && !closing_ && (SSL_pending(ssl_) > 0 || tcp_.buffer().size() > 0)) poller_->defer(this);
  flush();  // what reading produced (TLS 1.3 tickets, a key update's answer)
  feed();
}

void TlsTransport::feed() {
  // The TCP transport stops by itself when its buffer fills, and a record (up to
  // 16,389 bytes with its header) may not fit in it whole: OpenSSL takes what is there
  // and waits for the rest, which only a restarted read brings. Backpressure stays: not
  // while the codec above has stopped reading (after the handshake).
  if (closing_ || failed_ || tcp_eof_ || tcp_.reading() || (handshake_done_ && !reading_)) return;
  if (tcp_.buffer().allocated() && tcp_.buffer().free_space() == 0) return;  // OpenSSL has not taken it yet
  tcp_.start_reading();
}

void TlsTransport::fail(int status, Failure kind) {
  if (failed_) return;
  failed_ = true;
  failure_ = kind;
  reading_ = false;
  uv_timer_stop(&timer_);
  tcp_.stop_reading();
  if (client_ && !handshake_done_) {
    handler_.on_connect(status);  // the connect the caller waits for failed
  } else {
    handler_.on_read(status);
  }
}

void TlsTransport::on_handshake_timer(uv_timer_t* t) {
  auto* self = static_cast<TlsTransport*>(t->data);
  if (self->handshake_done_ || self->closing_) return;
  self->handshake_error_ = "the handshake did not finish in time";
  self->fail(UV_ETIMEDOUT, Failure::kTimeout);
}

// ---------------------------------------------------------------------------------------
// Writing

int TlsTransport::write(uv_buf_t* bufs, unsigned count) {
  if (closing_ || failed_) return UV_EPIPE;
  if (plaintext_) {
    std::string& to = tcp_writing_ ? next_ : out_;
    for (unsigned i = 0; i < count; ++i) to.append(bufs[i].base, bufs[i].len);
  } else {
    if (!handshake_done_) return UV_ENOTCONN;
    size_t total = 0;
    for (unsigned i = 0; i < count; ++i) total += bufs[i].len;
    if (count > 1 && total <= kCoalesceMax) {
      plain_.clear();
      for (unsigned i = 0; i < count; ++i) plain_.append(bufs[i].base, bufs[i].len);
      size_t written = 0;
      clear_errors();
      if (SSL_write_ex(ssl_, plain_.data(), plain_.size(), &written) != 1) return UV_EPROTO;
      count = 0;  // written
    }
    for (unsigned i = 0; i < count; ++i) {
      if (bufs[i].len == 0) continue;
      size_t written = 0;
      clear_errors();
      if (SSL_write_ex(ssl_, bufs[i].base, bufs[i].len, &written) != 1) return UV_EPROTO;
    }
  }
  if (const int rc = flush(); rc < 0) return rc;
  if (!tcp_writing_) return kWritten;
  write_pending_ = true;  // done when this ciphertext has left
  return kQueued;
}

int TlsTransport::flush() {
  if (tcp_writing_ || out_.empty()) return 0;
  uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
  const int rc = tcp_.write(&b, 1);
  if (rc == kWritten) {
    out_.clear();
    return 0;
  }
  if (rc == kQueued) {
    tcp_writing_ = true;
    return 0;
  }
  out_.clear();
  return rc;
}

void TlsTransport::on_write_done(int status) {
  tcp_writing_ = false;
  out_.clear();
  out_.swap(next_);  // what OpenSSL wrote meanwhile goes next
  int rc = status;
  if (rc == 0) rc = flush();
  if (rc == 0 && !tcp_writing_ && shut_pending_) {
    shut_pending_ = false;
    tcp_.shutdown_write();
  }
  // The codec's write is done once its ciphertext has left: not while what it wrote
  // (in next_, now out_) is queued in its turn.
  if (write_pending_ && (rc != 0 || !tcp_writing_)) {
    write_pending_ = false;
    handler_.on_write_done(rc);
  }
}

int TlsTransport::shutdown_write() {
  if (closing_) return UV_EPIPE;
  if (ssl_ == nullptr) return UV_ENOTCONN;
  if (shut_pending_) return 0;
  if (handshake_done_ && !failed_) {
    clear_errors();
    SSL_shutdown(ssl_);  // our close_notify, then the FIN
  }
  if (const int rc = flush(); rc < 0) return rc;
  if (tcp_writing_) {
    shut_pending_ = true;
    return 0;
  }
  return tcp_.shutdown_write();
}

// ---------------------------------------------------------------------------------------
// Closing

void TlsTransport::close() {
  if (closing_ || poller_ == nullptr) return;
  if (handshake_done_ && !failed_ && !broken_ && !plaintext_ && (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) == 0) {
    if (!tcp_writing_) {
      // close_notify, as far as the socket takes it now: the peer can tell our close
      // from a cut connection, and keeps its session (OpenSSL drops a client's session
      // when its connection ends without one, and the next connection pays a full
      // handshake).
      clear_errors();
      SSL_shutdown(ssl_);
      flush();
    } else {
      // No room to say it: the session is still good (OpenSSL would spoil ours at
      // SSL_free otherwise, and the pool's next connection could not resume).
      SSL_set_shutdown(ssl_, SSL_get_shutdown(ssl_) | SSL_SENT_SHUTDOWN);
    }
  }
  closing_ = true;
  reading_ = false;
  write_pending_ = false;
  tcp_.close();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_timer_closed);
  poller_->retire(this);  // a defer() of ours may be queued: it is dropped
}

void TlsTransport::on_closed() { handle_closed(); }

void TlsTransport::on_timer_closed(uv_handle_t* h) { static_cast<TlsTransport*>(h->data)->handle_closed(); }

void TlsTransport::handle_closed() {
  if (--open_handles_ == 0) handler_.on_closed();
}

}  // namespace ringproxy
