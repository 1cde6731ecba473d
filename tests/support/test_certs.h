// Keys and self-signed certificates made at run time with OpenSSL's API, with chosen
// validity dates, so that no key material is committed and no test depends on the day
// it runs. Header-only: each test binary takes what it uses (link PkgConfig::CRYPTO).
#pragma once

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>

namespace ringproxy::test {

struct FreePkey {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Key = std::unique_ptr<EVP_PKEY, FreePkey>;

enum class KeyType { kRsa, kEcdsa };

// RSA 2048 (the smallest Debian 12's OpenSSL accepts at its default security level) or
// ECDSA P-256. An RSA key takes a fraction of a second: tests make few.
inline Key make_key(KeyType type) {
  Key key(type == KeyType::kRsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256"));
  EXPECT_NE(key, nullptr);
  return key;
}

// `key`'s private half as PEM (PKCS #8), encrypted with AES-256 under `passphrase`
// when one is given.
inline std::string private_key_pem(EVP_PKEY* key, const char* passphrase = nullptr) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  const EVP_CIPHER* cipher = passphrase != nullptr ? EVP_aes_256_cbc() : nullptr;
  const int pass_len = passphrase != nullptr ? static_cast<int>(std::strlen(passphrase)) : 0;
  EXPECT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), key, cipher, passphrase, pass_len, nullptr, nullptr), 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// A certificate for `key`, self-signed with SHA-256, subject CN=`name`, valid from
// `not_before` to `not_after` (seconds since the epoch, as X.509 says: both inclusive).
inline std::string self_signed_pem(EVP_PKEY* key, const std::string& name, std::time_t not_before,
                                   std::time_t not_after) {
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  EXPECT_EQ(X509_set_version(cert.get(), 2), 1);  // v3
  EXPECT_EQ(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1), 1);
  EXPECT_NE(ASN1_TIME_set(X509_getm_notBefore(cert.get()), not_before), nullptr);
  EXPECT_NE(ASN1_TIME_set(X509_getm_notAfter(cert.get()), not_after), nullptr);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  EXPECT_EQ(X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0),
            1);
  EXPECT_EQ(X509_set_issuer_name(cert.get(), subject), 1);
  EXPECT_EQ(X509_set_pubkey(cert.get(), key), 1);
  EXPECT_GT(X509_sign(cert.get(), key, EVP_sha256()), 0);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  EXPECT_EQ(PEM_write_bio_X509(bio.get(), cert.get()), 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// Writes `text` to `path` (replacing it) and returns the path.
inline std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  return path;
}

}  // namespace ringproxy::test
