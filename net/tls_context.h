// What a TLS listener serves with (SPEC "TLS"): the certificates, chosen by SNI, and
// the settings every handshake shares. Built once from the config (at start and on
// every reload: new handshakes take the new context, open connections keep theirs,
// which their SSL objects hold a reference to), then immutable and shared by every
// worker.
//
// - Versions: TLS 1.2 and 1.3 (min_version raises the floor); the TLS 1.2 cipher list
//   is Mozilla's "intermediate" profile (ssl-config.mozilla.org, guidelines 5.7),
//   TLS 1.3 keeps OpenSSL's three suites; no renegotiation, no compression.
// - Certificates: each entry's names are its subjectAltName DNS names (the subject's
//   CN when it has none). SNI picks the first entry with a name that matches, exactly
//   or as a wildcard of one label ("*.example.com" matches "a.example.com", not
//   "example.com" nor "a.b.example.com", RFC 6125 6.4.3); no SNI or no match takes the
//   first entry. Entries with the same names share one SSL_CTX, so an ECDSA and an
//   RSA certificate for one site stand side by side and OpenSSL serves each client the
//   one its signature algorithms allow.
// - ALPN: the first of `alpn` (proxy.alpn, in our preference order: "h2",
//   "http/1.1") that the client offers; a client offering none of them is served
//   without ALPN, as HTTP/1.1.
// - Resumption: session tickets under keys that TicketKeys holds for every worker of
//   the process, so a ticket issued by one worker resumes on another; no server-side
//   session cache (it would be per worker).
// - Client certificates when client_ca is set: required and verified against it.
//
// Thread: create() anywhere; new_ssl() from any thread (SSL_CTX is thread-safe for
// that); TicketKeys is locked.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace ringproxy {

// The session ticket keys of one process: the current key encrypts new tickets, the
// previous ones still decrypt (a ticket issued before a rotation resumes after it).
// rotate() is called on a timer by the control loop; the handshakes of every worker
// read the keys under a mutex, for a few dozen nanoseconds per ticket.
class TicketKeys {
 public:
  static constexpr size_t kKept = 3;  // the current key and the two before it

  struct Key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> aes{};   // AES-256-CBC
    std::array<unsigned char, 32> hmac{};  // HMAC-SHA256
  };

  TicketKeys();  // one fresh random key
  // A new current key; the oldest beyond kKept is forgotten.
  void rotate();
  // The current key, for a new ticket.
  Key current() const;
  // The key named `name`, if still kept; *renew: it is not the current one (the client
  // should get a new ticket).
  bool find(const unsigned char* name, Key* out, bool* renew) const;

 private:
  static Key fresh();
  mutable std::mutex mu_;
  std::vector<Key> keys_;  // newest first
};

class ServerTlsContext {
 public:
  // Loads every certificate and key (and client_ca) of `config`. Returns null with
  // *error naming the file and OpenSSL's reason when one cannot be used.
  static std::shared_ptr<const ServerTlsContext> create(const ServerTlsConfig& config,
                                                        std::shared_ptr<TicketKeys> keys, std::string* error,
                                                        const std::vector<std::string>& alpn = {"http/1.1"});
  ~ServerTlsContext();
  ServerTlsContext(const ServerTlsContext&) = delete;
  ServerTlsContext& operator=(const ServerTlsContext&) = delete;

  // A server-side SSL for one connection (accept state), or null when out of memory.
  SSL* new_ssl() const;

  // The names each SSL_CTX serves, in config order (tests, status).
  std::vector<std::vector<std::string>> names() const;
  // Each certificate file, in config order, and when its leaf expires
  // (ringproxy_tls_certificate_expiry_seconds).
  struct Certificate {
    std::string path;
    std::time_t not_after = 0;
  };
  const std::vector<Certificate>& certificates() const { return certificates_; }
  // Whether `pattern` (a certificate name, maybe "*.suffix") covers `host` (SNI).
  static bool name_matches(std::string_view pattern, std::string_view host);

 private:
  struct Site {
    SSL_CTX* ctx = nullptr;
    std::vector<std::string> names;  // lower case
  };
  ServerTlsContext() = default;
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                     unsigned int inlen, void* arg);
  static int on_ticket_key(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                           EVP_MAC_CTX* mac, int encrypt);
  const Site* site_for(std::string_view host) const;

  std::vector<Site> sites_;  // sites_[0] serves handshakes without SNI or without a match
  std::vector<Certificate> certificates_;
  std::shared_ptr<TicketKeys> keys_;
  std::vector<unsigned char> alpn_;  // the protocols offered, in wire format
};

// The last session a backend gave us (a TLS 1.3 ticket, or a TLS 1.2 one), offered by
// the next connection to it for an abbreviated handshake. One per pool (node, TLS name
// and worker) and per health-checked node and name; single-threaded like its owner.
// A resumed handshake verifies nothing again, so a session is offered only to the
// context that made it (ClientTlsContext::id()): after a reload that changes what is
// trusted (a new CA, verify turned on), the next connection verifies in full.
class TlsSessionCache {
 public:
  TlsSessionCache() = default;
  ~TlsSessionCache() { SSL_SESSION_free(session_); }
  TlsSessionCache(const TlsSessionCache&) = delete;
  TlsSessionCache& operator=(const TlsSessionCache&) = delete;
  // Takes `session` (its reference), made by the context `maker`, dropping the one before.
  void put(SSL_SESSION* session, uint64_t maker) {
    SSL_SESSION_free(session_);
    session_ = session;
    maker_ = maker;
  }
  SSL_SESSION* get() const { return session_; }  // still ours; null when none
  // The session, if `maker` made it.
  SSL_SESSION* get_for(uint64_t maker) const { return maker == maker_ ? session_ : nullptr; }
  void clear() { put(nullptr, 0); }

 private:
  SSL_SESSION* session_ = nullptr;
  uint64_t maker_ = 0;
};

// What connections to TLS backends are made with (SPEC "TLS", [upstream_tls]): TLS 1.2
// and 1.3, the same cipher list as the listener, ALPN "http/1.1", the server's chain
// verified against upstream_tls.ca (or the system's store) and its name against the
// node's tls_name (a DNS name, checked against the certificate's names, and sent as SNI;
// or an IP address, checked against its IP entries, no SNI: RFC 6066 3), a client
// certificate when upstream_tls.cert is set. verify = false checks nothing. New sessions
// go to the connection's TlsSessionCache (no cache inside OpenSSL). Built once per
// config and shared by every worker.
class ClientTlsContext {
 public:
  static std::shared_ptr<const ClientTlsContext> create(const UpstreamTlsConfig& config, std::string* error);
  ~ClientTlsContext();
  ClientTlsContext(const ClientTlsContext&) = delete;
  ClientTlsContext& operator=(const ClientTlsContext&) = delete;

  // A client-side SSL for one connection to `name`, offering `cache`'s session when it
  // has one, and putting the sessions the server gives into it (`cache` null: none
  // offered or kept; else it must outlive the SSL). Null when out of memory.
  SSL* new_ssl(std::string_view name, TlsSessionCache* cache) const;
  bool verifies() const { return verify_; }
  // Unique in the process, never reused (the sessions it makes are tagged with it).
  uint64_t id() const { return id_; }

 private:
  ClientTlsContext() = default;
  static int on_new_session(SSL* ssl, SSL_SESSION* session);
  SSL_CTX* ctx_ = nullptr;
  bool verify_ = true;
  uint64_t id_ = 0;
};

// OpenSSL's error queue as one line ("" when empty); the queue is cleared.
std::string tls_error_text();

}  // namespace ringproxy
