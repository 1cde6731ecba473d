#include "net/tls_context.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>

#include "config/read_file.h"

namespace ringproxy {

namespace {

// Mozilla's "intermediate" TLS 1.2 suites (ssl-config.mozilla.org, guidelines 5.7), in
// OpenSSL's names. TLS 1.3 suites are OpenSSL's default three, as the profile says.
constexpr const char* kIntermediateCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

// The session id context: OpenSSL resumes a session (a ticket included) only under the
// context it was made in, and requires one for resumption with client certificates. It
// is a digest of what decides who may connect (the client CA bundle's bytes, or none),
// so that after a reload that changes client_ca a ticket issued before cannot resume
// a session whose client was verified (or not) under the old rules; the ticket keys
// themselves are kept across reloads. SHA-256 fits SSL_MAX_SID_CTX_LENGTH (32).
std::array<unsigned char, 32> session_id_context(const ServerTlsConfig& config) {
  std::string material = "ringproxy\n";
  if (!config.client_ca.empty()) {
    std::string bundle;
    read_whole_file(config.client_ca, &bundle);  // unreadable: create() fails on it below
    material += "client_ca\n" + bundle;
  }
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  EVP_Digest(material.data(), material.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The DNS names a certificate is for: its subjectAltName DNS entries, else its CN.
std::vector<std::string> certificate_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      const ASN1_STRING* s = n->d.dNSName;
      names.push_back(lower(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                             static_cast<size_t>(ASN1_STRING_length(s)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    const X509_NAME* subject = X509_get_subject_name(cert);
    const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at >= 0) {
      const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
      names.push_back(lower(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                             static_cast<size_t>(ASN1_STRING_length(s)))));
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

// The SSL ex_data slot that holds a client connection's TlsSessionCache*.
int session_cache_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// The leaf of a PEM chain file, or null (the caller reports tls_error_text()).
X509* read_leaf(const std::string& path) {
  BIO* bio = BIO_new_file(path.c_str(), "r");
  if (bio == nullptr) return nullptr;
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return cert;
}

}  // namespace

std::string tls_error_text() {
  std::string out;
  char buf[256];
  while (const unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// TicketKeys

TicketKeys::TicketKeys() { keys_.push_back(fresh()); }

TicketKeys::Key TicketKeys::fresh() {
  Key k;
  // RAND_bytes fails only when the system's entropy source does: no key is then
  // better than a predictable one, and no ticket can be made (full handshakes).
  if (RAND_bytes(k.name.data(), static_cast<int>(k.name.size())) != 1 ||
      RAND_bytes(k.aes.data(), static_cast<int>(k.aes.size())) != 1 ||
      RAND_bytes(k.hmac.data(), static_cast<int>(k.hmac.size())) != 1) {
    k.name.fill(0);  // name 0: never found, never used to encrypt (current() checks)
  }
  return k;
}

void TicketKeys::rotate() {
  Key k = fresh();
  std::lock_guard<std::mutex> lock(mu_);
  keys_.insert(keys_.begin(), k);
  if (keys_.size() > kKept) keys_.resize(kKept);
}

TicketKeys::Key TicketKeys::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_.front();
}

bool TicketKeys::find(const unsigned char* name, Key* out, bool* renew) const {
  std::lock_guard<std::mutex> lock(mu_);
  static constexpr std::array<unsigned char, 16> kUnset{};
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i].name == kUnset) continue;  // a key RAND_bytes could not make: never a match
    if (std::memcmp(keys_[i].name.data(), name, keys_[i].name.size()) != 0) continue;
    *out = keys_[i];
    *renew = i != 0;
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// ServerTlsContext

std::shared_ptr<const ServerTlsContext> ServerTlsContext::create(const ServerTlsConfig& config,
                                                                 std::shared_ptr<TicketKeys> keys,
                                                                 std::string* error,
                                                                 const std::vector<std::string>& alpn) {
  ERR_clear_error();
  error->clear();
  std::shared_ptr<ServerTlsContext> self(new ServerTlsContext);
  for (const std::string& p : alpn) {
    self->alpn_.push_back(static_cast<unsigned char>(p.size()));
    self->alpn_.insert(self->alpn_.end(), p.begin(), p.end());
  }
  self->keys_ = config.session_tickets ? std::move(keys) : nullptr;
  if (config.certificates.empty()) {
    *error = "no certificate";
    return nullptr;
  }
  const std::array<unsigned char, 32> sid_ctx = session_id_context(config);
  STACK_OF(X509_NAME)* client_cas = nullptr;
  if (!config.client_ca.empty()) {
    client_cas = SSL_load_client_CA_file(config.client_ca.c_str());
    if (client_cas == nullptr) {
      *error = config.client_ca + ": no CA certificate could be read: " + tls_error_text();
      return nullptr;
    }
  }
  for (const TlsCertificateConfig& c : config.certificates) {
    X509* leaf = read_leaf(c.cert);
    if (leaf == nullptr) {
      *error = c.cert + ": no certificate could be read: " + tls_error_text();
      break;
    }
    std::vector<std::string> names = certificate_names(leaf);
    std::tm not_after{};
    const bool dated = ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &not_after) == 1;
    X509_free(leaf);
    self->certificates_.push_back({c.cert, dated ? timegm(&not_after) : 0});
    auto same = std::find_if(self->sites_.begin(), self->sites_.end(),
                             [&](const Site& s) { return s.names == names; });
    SSL_CTX* ctx;
    if (same != self->sites_.end()) {
      ctx = same->ctx;  // another key type for the same names (ECDSA beside RSA)
    } else {
      ctx = SSL_CTX_new(TLS_server_method());
      if (ctx == nullptr) {
        *error = "SSL_CTX_new: " + tls_error_text();
        break;
      }
      self->sites_.push_back({ctx, std::move(names)});
      SSL_CTX_set_min_proto_version(ctx, config.min_version == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
      SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
      // Not SSL_MODE_RELEASE_BUFFERS: idle connections give OpenSSL's buffers back
      // themselves, past a count (TlsTransport::release_buffer).
      SSL_CTX_set_cipher_list(ctx, kIntermediateCiphers);
      SSL_CTX_set_session_id_context(ctx, sid_ctx.data(), static_cast<unsigned int>(sid_ctx.size()));
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);  // per worker: tickets instead
      // A ticket is good for an hour: the control loop rotates the keys hourly and keeps
      // the two before (TicketKeys::kKept), so every ticket still decrypts until it expires.
      SSL_CTX_set_timeout(ctx, 3600);
      // One TLS 1.3 ticket per full handshake, not OpenSSL's two: each costs an encryption
      // under the ticket key and a record (bench/compare/tls.sh, full handshakes: 369 us
      // of CPU per handshake against 393 with two). A resumed handshake gets a new one
      // only when its ticket's key has been rotated out of first place (as nginx's).
      SSL_CTX_set_num_tickets(ctx, 1);
      SSL_CTX_set_app_data(ctx, self.get());
      // An encrypted key is an error (--check says so), never a prompt on a terminal.
      SSL_CTX_set_default_passwd_cb(ctx, [](char*, int, int, void*) { return 0; });
      // SSL_CTX_set_tlsext_servername_callback, without its C cast.
      SSL_CTX_callback_ctrl(ctx, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB, reinterpret_cast<void (*)()>(on_servername));
      SSL_CTX_set_tlsext_servername_arg(ctx, self.get());
      SSL_CTX_set_alpn_select_cb(ctx, on_alpn, nullptr);
      if (self->keys_) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
      } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
      }
      if (client_cas != nullptr) {
        if (SSL_CTX_load_verify_locations(ctx, config.client_ca.c_str(), nullptr) != 1) {
          *error = config.client_ca + ": " + tls_error_text();
          break;
        }
        SSL_CTX_set_client_CA_list(ctx, SSL_dup_CA_list(client_cas));
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      }
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
      *error = c.cert + ": " + tls_error_text();
      break;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      *error = c.key + ": " + tls_error_text();
      break;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      *error = c.key + ": the key does not match " + c.cert + ": " + tls_error_text();
      break;
    }
  }
  if (client_cas != nullptr) sk_X509_NAME_pop_free(client_cas, X509_NAME_free);
  if (!error->empty()) return nullptr;
  return self;
}

// ---------------------------------------------------------------------------------------
// ClientTlsContext

std::shared_ptr<const ClientTlsContext> ClientTlsContext::create(const UpstreamTlsConfig& config,
                                                                 std::string* error) {
  ERR_clear_error();
  error->clear();
  std::shared_ptr<ClientTlsContext> self(new ClientTlsContext);
  static std::atomic<uint64_t> next_id{1};
  self->id_ = next_id.fetch_add(1, std::memory_order_relaxed);
  self->verify_ = config.verify;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) {
    *error = "SSL_CTX_new: " + tls_error_text();
    return nullptr;
  }
  self->ctx_ = ctx;
  SSL_CTX_set_app_data(ctx, self.get());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Buffers as the listener's (TlsTransport::release_buffer).
  SSL_CTX_set_cipher_list(ctx, kIntermediateCiphers);
  SSL_CTX_set_default_passwd_cb(ctx, [](char*, int, int, void*) { return 0; });
  static constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
  // Sessions are kept per node by their connections (TlsSessionCache), not in here.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  if (config.verify) {
    const int loaded = config.ca.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                         : SSL_CTX_load_verify_locations(ctx, config.ca.c_str(), nullptr);
    if (loaded != 1) {
      *error = (config.ca.empty() ? std::string("the system's trust store") : config.ca) + ": " + tls_error_text();
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!config.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, config.cert.c_str()) != 1) {
      *error = config.cert + ": " + tls_error_text();
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, config.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      *error = config.key + ": " + tls_error_text();
      return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      *error = config.key + ": the key does not match " + config.cert + ": " + tls_error_text();
      return nullptr;
    }
  }
  return self;
}

ClientTlsContext::~ClientTlsContext() { SSL_CTX_free(ctx_); }

SSL* ClientTlsContext::new_ssl(std::string_view name, TlsSessionCache* cache) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  SSL_set_connect_state(ssl);
  const std::string host(name);
  bool ok = true;
  if (is_ip_literal(host)) {
    // An address is checked against the certificate's IP entries and never sent as
    // SNI (RFC 6066 3: "Literal IPv4 and IPv6 addresses are not permitted").
    if (verify_) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1;
  } else if (!host.empty()) {
    // SSL_set_tlsext_host_name, without the macro's C cast.
    ok = SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(host.c_str())) == 1;
    if (ok && verify_) {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl, host.c_str()) == 1;
    }
  }
  if (ok && cache != nullptr && cache->get_for(id_) != nullptr) ok = SSL_set_session(ssl, cache->get_for(id_)) == 1;
  if (ok) ok = SSL_set_ex_data(ssl, session_cache_index(), cache) == 1;
  if (!ok) {
    SSL_free(ssl);
    return nullptr;
  }
  return ssl;
}

int ClientTlsContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* cache = static_cast<TlsSessionCache*>(SSL_get_ex_data(ssl, session_cache_index()));
  const auto* self = static_cast<const ClientTlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (cache == nullptr || self == nullptr) return 0;  // not kept: OpenSSL frees it
  cache->put(session, self->id_);
  return 1;  // the reference is ours now
}

ServerTlsContext::~ServerTlsContext() {
  for (Site& s : sites_) SSL_CTX_free(s.ctx);
}

SSL* ServerTlsContext::new_ssl() const {
  SSL* ssl = SSL_new(sites_.front().ctx);
  if (ssl != nullptr) SSL_set_accept_state(ssl);
  return ssl;
}

std::vector<std::vector<std::string>> ServerTlsContext::names() const {
  std::vector<std::vector<std::string>> out;
  for (const Site& s : sites_) out.push_back(s.names);
  return out;
}

bool ServerTlsContext::name_matches(std::string_view pattern, std::string_view host) {
  auto iequal = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
  };
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    // One label, not empty and without a dot, before the suffix (RFC 6125 6.4.3).
    const std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (host.size() <= suffix.size()) return false;
    const std::string_view label = host.substr(0, host.size() - suffix.size());
    return label.find('.') == std::string_view::npos && iequal(host.substr(label.size()), suffix);
  }
  return iequal(pattern, host);
}

const ServerTlsContext::Site* ServerTlsContext::site_for(std::string_view host) const {
  for (const Site& s : sites_) {
    for (const std::string& n : s.names) {
      if (name_matches(n, host)) return &s;
    }
  }
  return nullptr;
}

int ServerTlsContext::on_servername(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const ServerTlsContext*>(arg);
  const char* host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (host == nullptr) return SSL_TLSEXT_ERR_OK;  // no SNI: the first site
  const Site* site = self->site_for(host);
  if (site != nullptr && site->ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, site->ctx);
  return SSL_TLSEXT_ERR_OK;
}

int ServerTlsContext::on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                              unsigned int inlen, void*) {
  const auto* self = static_cast<const ServerTlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (self == nullptr || self->alpn_.empty()) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* selected = nullptr;
  // Our order first: the first of ours the client offers.
  if (SSL_select_next_proto(&selected, outlen, self->alpn_.data(), static_cast<unsigned>(self->alpn_.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // nothing we speak offered: go on without ALPN
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int ServerTlsContext::on_ticket_key(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                                    EVP_MAC_CTX* mac, int encrypt) {
  const auto* self = static_cast<const ServerTlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (self == nullptr || !self->keys_) return 0;
  TicketKeys::Key key;
  bool renew = false;
  if (encrypt != 0) {
    key = self->keys_->current();
    static constexpr std::array<unsigned char, 16> kUnset{};
    if (key.name == kUnset) return 0;  // no usable key: no ticket
    std::memcpy(name, key.name.data(), key.name.size());
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
  } else if (!self->keys_->find(name, &key, &renew)) {
    return 0;  // a key rotated out, or another process's: a full handshake
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac.data(), key.hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  const int ok = encrypt != 0 ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv)
                              : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv);
  if (ok != 1) return -1;
  return renew ? 2 : 1;
}

}  // namespace ringproxy
