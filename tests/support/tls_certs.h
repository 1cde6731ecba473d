// Certificates made by the tests themselves (no key or certificate is committed): a
// key (EC P-256 or RSA 2048) and a certificate for chosen DNS names and validity,
// self-signed or signed by a test CA, written as PEM files into a directory the test
// owns. Header-only, on OpenSSL 3.0.
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace ringproxy::test {

enum class KeyType { kEc, kRsa };

struct TestCert {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  std::string cert_path;  // PEM certificate
  std::string key_path;   // PEM private key
};

// A temporary directory, removed with its files at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ringproxy-tls-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    EXPECT_NE(d, nullptr);
    path_ = d != nullptr ? d : "/tmp";
  }
  ~TempDir() {
    const std::string cmd = "rm -rf '" + path_ + "'";
    if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "could not remove " << path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline EVP_PKEY* make_key(KeyType type) {
  return type == KeyType::kEc ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
                              : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
}

inline void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr) << path;
  if (cert != nullptr) PEM_write_X509(f, cert);
  if (key != nullptr) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

// A certificate for `names` (subjectAltName DNS; the first is also the CN), valid from
// `from_s` to `until_s` seconds from now, signed by `issuer` (self-signed when null),
// written to DIR/STEM.pem and DIR/STEM.key. `ca`: a CA certificate (basicConstraints).
inline TestCert make_cert(const std::string& dir, const std::string& stem, const std::vector<std::string>& names,
                          KeyType type = KeyType::kEc, const TestCert* issuer = nullptr, long from_s = -3600,
                          long until_s = 86400L * 30, bool ca = false) {
  TestCert c;
  c.key = make_key(type);
  c.cert = X509_new();
  X509_set_version(c.cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(c.cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(c.cert), from_s);
  X509_gmtime_adj(X509_getm_notAfter(c.cert), until_s);
  X509_set_pubkey(c.cert, c.key);
  X509_NAME* name = X509_get_subject_name(c.cert);
  const std::string cn = names.empty() ? stem : names.front();
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(c.cert, issuer != nullptr ? X509_get_subject_name(issuer->cert) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer->cert : c.cert, c.cert, nullptr, nullptr, 0);
  auto add_ext = [&](int nid, const std::string& value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    ASSERT_NE(ext, nullptr) << value;
    X509_add_ext(c.cert, ext, -1);
    X509_EXTENSION_free(ext);
  };
  if (!names.empty()) {
    std::string san;
    for (const std::string& n : names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
    add_ext(NID_subject_alt_name, san);
  }
  add_ext(NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  X509_sign(c.cert, issuer != nullptr ? issuer->key : c.key, EVP_sha256());
  c.cert_path = dir + "/" + stem + ".pem";
  c.key_path = dir + "/" + stem + ".key";
  write_pem(c.cert_path, c.cert, nullptr);
  write_pem(c.key_path, nullptr, c.key);
  return c;
}

inline void free_cert(TestCert& c) {
  X509_free(c.cert);
  EVP_PKEY_free(c.key);
  c.cert = nullptr;
  c.key = nullptr;
}

}  // namespace ringproxy::test
