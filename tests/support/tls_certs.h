// Certificates made by the tests themselves (no key or certificate is committed): a
// key (EC P-256 or RSA 2048) and a certificate for chosen DNS names and validity,
// self-signed or signed by a test CA, written as PEM files into a directory the test
// owns; or, for tests that check dates, PEM text with absolute validity times.
// Header-only, on OpenSSL 3.0.
#pragma once

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
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

// A certificate for `names` (subjectAltName DNS, or IP for a name written "IP:ADDRESS";
// the first, without "IP:", is also the CN), valid from
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
  std::string cn = names.empty() ? stem : names.front();
  if (cn.starts_with("IP:")) cn.erase(0, 3);
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
    for (const std::string& n : names) san += (san.empty() ? "" : ",") + (n.starts_with("IP:") ? n : "DNS:" + n);
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

// For tests that check dates against a `now` of their own (net/tls_files.h): PEM text
// rather than files, validity as absolute times, the caller's key.

struct FreeKey {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using OwnedKey = std::unique_ptr<EVP_PKEY, FreeKey>;

// The text a memory BIO holds.
inline std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

// A certificate for `key`, self-signed with SHA-256, subject CN=`cn`, valid from
// `not_before` to `not_after` (seconds since the epoch; X.509 counts both inclusive).
inline std::string self_signed_pem(EVP_PKEY* key, const std::string& cn, std::time_t not_before,
                                   std::time_t not_after) {
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  EXPECT_EQ(X509_set_version(cert.get(), 2), 1);  // v3
  EXPECT_EQ(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1), 1);
  EXPECT_NE(ASN1_TIME_set(X509_getm_notBefore(cert.get()), not_before), nullptr);
  EXPECT_NE(ASN1_TIME_set(X509_getm_notAfter(cert.get()), not_after), nullptr);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  EXPECT_EQ(X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()),
                                       -1, -1, 0),
            1);
  EXPECT_EQ(X509_set_issuer_name(cert.get(), subject), 1);
  EXPECT_EQ(X509_set_pubkey(cert.get(), key), 1);
  EXPECT_GT(X509_sign(cert.get(), key, EVP_sha256()), 0);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  EXPECT_EQ(PEM_write_bio_X509(bio.get(), cert.get()), 1);
  return bio_text(bio.get());
}

// `key`'s private half as PEM (PKCS #8), encrypted with AES-256 under `passphrase` when
// one is given.
inline std::string private_key_pem(EVP_PKEY* key, const char* passphrase = nullptr) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  const EVP_CIPHER* cipher = passphrase != nullptr ? EVP_aes_256_cbc() : nullptr;
  const int length = passphrase != nullptr ? static_cast<int>(std::strlen(passphrase)) : 0;
  EXPECT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), key, cipher, passphrase, length, nullptr, nullptr), 1);
  return bio_text(bio.get());
}

}  // namespace ringproxy::test
