// net/tls_files.h: what the files named by the TLS settings hold, on keys and
// certificates the test makes (tests/support/tls_certs.h), checked at a fixed instant.
#include "net/tls_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "tests/support/tls_certs.h"

namespace ringproxy {
namespace {

using test::KeyType;
using test::make_key;
using test::OwnedKey;
using test::private_key_pem;
using test::self_signed_pem;

// 2023-11-14 22:13:20 UTC: every date below is relative to it, so no result depends on
// the day the test runs.
constexpr std::time_t kNow = 1'700'000'000;
constexpr std::time_t kDay = 24 * 60 * 60;

std::string dir() {
  static const std::string path = [] {
    char tmpl[] = "/tmp/ringproxy-tls-files-XXXXXX";
    const char* made = mkdtemp(tmpl);
    EXPECT_NE(made, nullptr);
    return std::string(made != nullptr ? made : "/tmp");
  }();
  return path;
}

// Writes `text` to DIR/NAME (replacing it) and returns the path.
std::string file(const std::string& name, const std::string& text) {
  const std::string path = dir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  return path;
}

// Keys are made once per run: RSA generation is the slow part of these tests.
EVP_PKEY* rsa_key() {
  static const OwnedKey key(make_key(KeyType::kRsa));
  return key.get();
}
EVP_PKEY* other_rsa_key() {
  static const OwnedKey key(make_key(KeyType::kRsa));
  return key.get();
}
EVP_PKEY* ec_key() {
  static const OwnedKey key(make_key(KeyType::kEc));
  return key.get();
}
EVP_PKEY* other_ec_key() {
  static const OwnedKey key(make_key(KeyType::kEc));
  return key.get();
}

// A certificate valid a year around kNow.
std::string valid_cert(EVP_PKEY* key, const std::string& name = "site.test") {
  return self_signed_pem(key, name, kNow - 30 * kDay, kNow + 365 * kDay);
}

// A Config whose proxy.tls has one certificate entry, at made-up positions: the cert
// named at 3:10, the key at 3:30.
Config server_config(const std::string& cert, const std::string& key) {
  Config c;
  c.path = "t.toml";
  c.proxy.tls.enabled = true;
  c.proxy.tls.certificates.push_back({cert, key, SourcePos{3, 10}, SourcePos{3, 30}});
  return c;
}

std::vector<std::string> printed(const std::vector<TlsFileProblem>& problems) {
  std::vector<std::string> out;
  for (const TlsFileProblem& p : problems) out.push_back(p.to_string("t.toml"));
  return out;
}

std::vector<std::string> problems_of(const Config& config, std::time_t now = kNow) {
  return printed(check_tls_files(config, now));
}

using Lines = std::vector<std::string>;

TEST(TlsFiles, ValidRsaAndEcdsaPairsHaveNoProblems) {
  for (EVP_PKEY* key : {rsa_key(), ec_key()}) {
    const std::string cert = file("valid.pem", valid_cert(key));
    const std::string pkey = file("valid.key", private_key_pem(key));
    EXPECT_EQ(problems_of(server_config(cert, pkey)), Lines{});
  }
}

TEST(TlsFiles, CertificateAndKeyInOneFile) {
  const std::string both = file("both.pem", valid_cert(ec_key()) + private_key_pem(ec_key()));
  EXPECT_EQ(problems_of(server_config(both, both)), Lines{});
  // The key first, as some tools write it.
  const std::string key_first = file("key-first.pem", private_key_pem(rsa_key()) + valid_cert(rsa_key()));
  EXPECT_EQ(problems_of(server_config(key_first, key_first)), Lines{});
}

TEST(TlsFiles, TheChainFollowsTheLeafAndOnlyTheLeafIsDated) {
  // The second certificate expired long ago: chains may carry such (a cross-signed
  // root), and only the leaf's dates are the server's to fix.
  const std::string chain = file("chain.pem", valid_cert(ec_key()) + self_signed_pem(other_ec_key(), "ca.test",
                                                                                   kNow - 900 * kDay, kNow - 400 * kDay));
  EXPECT_EQ(problems_of(server_config(chain, file("chain.key", private_key_pem(ec_key())))), Lines{});
}

TEST(TlsFiles, MissingAndUnreadableFiles) {
  const std::string key = file("k.key", private_key_pem(ec_key()));
  EXPECT_EQ(problems_of(server_config(dir() + "/nonexistent.pem", key)),
            (Lines{"t.toml:3:10: proxy.tls.certificates[0].cert: cannot read \"" + dir() +
                   "/nonexistent.pem\": No such file or directory"}));
  const std::string cert = file("k.pem", valid_cert(ec_key()));
  EXPECT_EQ(problems_of(server_config(cert, dir())),
            (Lines{"t.toml:3:30: proxy.tls.certificates[0].key: cannot read \"" + dir() + "\": Is a directory"}));

  // Permissions do not stop root (some CI runs as root): a mode-000 file is readable then.
  if (geteuid() != 0) {
    const std::string locked = file("locked.key", private_key_pem(ec_key()));
    ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
    EXPECT_EQ(problems_of(server_config(cert, locked)),
              (Lines{"t.toml:3:30: proxy.tls.certificates[0].key: cannot read \"" + locked + "\": Permission denied"}));
  }
}

TEST(TlsFiles, FilesWithoutWhatTheyShouldHold) {
  const std::string cert = file("n.pem", valid_cert(ec_key()));
  const std::string key = file("n.key", private_key_pem(ec_key()));
  const std::string empty = file("empty", "");
  const std::string text = file("text", "not PEM at all\n");
  // The two swapped: a key where the certificate goes and the other way round.
  EXPECT_EQ(problems_of(server_config(key, cert)),
            (Lines{"t.toml:3:10: proxy.tls.certificates[0].cert: no PEM certificate in \"" + key + "\"",
                   "t.toml:3:30: proxy.tls.certificates[0].key: no PEM private key in \"" + cert + "\""}));
  EXPECT_EQ(problems_of(server_config(empty, text)),
            (Lines{"t.toml:3:10: proxy.tls.certificates[0].cert: no PEM certificate in \"" + empty + "\"",
                   "t.toml:3:30: proxy.tls.certificates[0].key: no PEM private key in \"" + text + "\""}));
}

TEST(TlsFiles, DamagedPemBlocks) {
  const std::string good = valid_cert(ec_key());
  // A chain whose second block is cut short: loading the chain would fail there.
  const std::string cut = file("cut.pem", good + good.substr(0, good.size() / 2));
  const std::string key = file("d.key", private_key_pem(ec_key()));
  const Lines cut_problems = problems_of(server_config(cut, key));
  ASSERT_EQ(cut_problems.size(), 1u);
  EXPECT_TRUE(cut_problems[0].starts_with("t.toml:3:10: proxy.tls.certificates[0].cert: cannot parse certificate 2 in \"" +
                                          cut + "\": "))
      << cut_problems[0];

  std::string damaged = private_key_pem(ec_key());
  damaged.insert(damaged.find('\n') + 1, "AAAA");
  const std::string bad_key = file("damaged.key", damaged);
  const Lines key_problems = problems_of(server_config(file("d.pem", good), bad_key));
  ASSERT_EQ(key_problems.size(), 1u);
  EXPECT_TRUE(key_problems[0].starts_with("t.toml:3:30: proxy.tls.certificates[0].key: cannot parse the private key in \"" +
                                          bad_key + "\": "))
      << key_problems[0];
}

TEST(TlsFiles, EncryptedKeyIsRefusedWithoutAsking) {
  // OpenSSL's default would prompt on the terminal; the check must not.
  const std::string cert = file("e.pem", valid_cert(ec_key()));
  const std::string key = file("e.key", private_key_pem(ec_key(), "passphrase"));
  EXPECT_EQ(problems_of(server_config(cert, key)),
            (Lines{"t.toml:3:30: proxy.tls.certificates[0].key: the private key in \"" + key +
                   "\" is encrypted, and ringproxy asks for no passphrase: store it decrypted (openssl pkey -in KEY "
                   "-out PLAIN), readable by ringproxy only"}));
}

TEST(TlsFiles, KeyThatDoesNotMatchItsCertificate) {
  struct Case {
    EVP_PKEY* cert_key;
    EVP_PKEY* file_key;
  };
  const Case cases[] = {
      {rsa_key(), other_rsa_key()},  // same type, other values
      {ec_key(), other_ec_key()},
      {rsa_key(), ec_key()},  // other types
      {ec_key(), rsa_key()},
  };
  for (const Case& c : cases) {
    const std::string cert = file("m.pem", valid_cert(c.cert_key));
    const std::string key = file("m.key", private_key_pem(c.file_key));
    EXPECT_EQ(problems_of(server_config(cert, key)),
              (Lines{"t.toml:3:30: proxy.tls.certificates[0].key: the private key in \"" + key +
                     "\" does not match the certificate in \"" + cert + "\""}));
  }
}

TEST(TlsFiles, ExpiredAndNotYetValidAreErrors) {
  const std::string key = file("x.key", private_key_pem(ec_key()));
  const std::string expired = file("expired.pem", self_signed_pem(ec_key(), "x", kNow - 90 * kDay, kNow - kDay));
  EXPECT_EQ(problems_of(server_config(expired, key)),
            (Lines{"t.toml:3:10: proxy.tls.certificates[0].cert: the certificate in \"" + expired +
                   "\" expired on 2023-11-13 22:13:20 UTC"}));
  const std::string early = file("early.pem", self_signed_pem(ec_key(), "x", kNow + kDay, kNow + 90 * kDay));
  EXPECT_EQ(problems_of(server_config(early, key)),
            (Lines{"t.toml:3:10: proxy.tls.certificates[0].cert: the certificate in \"" + early +
                   "\" is not valid before 2023-11-15 22:13:20 UTC"}));
  EXPECT_TRUE(has_tls_file_errors(check_tls_files(server_config(expired, key), kNow)));
}

TEST(TlsFiles, ExpiringWithinFourteenDaysIsAWarning) {
  const std::string key = file("w.key", private_key_pem(rsa_key()));
  const std::string soon = file("soon.pem", self_signed_pem(rsa_key(), "x", kNow - kDay, kNow + 3 * kDay + 3600));
  const std::vector<TlsFileProblem> problems = check_tls_files(server_config(soon, key), kNow);
  EXPECT_EQ(printed(problems), (Lines{"warning: t.toml:3:10: proxy.tls.certificates[0].cert: the certificate in \"" +
                                     soon + "\" expires on 2023-11-17 23:13:20 UTC, in 3 days"}));
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0], (TlsFileProblem{TlsFileSeverity::kWarning, SourcePos{3, 10}, "proxy.tls.certificates[0].cert",
                                         "the certificate in \"" + soon +
                                             "\" expires on 2023-11-17 23:13:20 UTC, in 3 days"}));
  EXPECT_FALSE(has_tls_file_errors(problems));
}

TEST(TlsFiles, TheExpiryBoundaries) {
  const std::string key = file("b.key", private_key_pem(ec_key()));
  auto problems_ending_at = [&](std::time_t not_after) {
    return problems_of(server_config(file("b.pem", self_signed_pem(ec_key(), "x", kNow - kDay, not_after)), key));
  };
  const std::string prefix = "t.toml:3:10: proxy.tls.certificates[0].cert: the certificate in \"" + dir() + "/b.pem\" ";
  EXPECT_EQ(problems_ending_at(kNow + 14 * kDay), Lines{});
  EXPECT_EQ(problems_ending_at(kNow + 14 * kDay - 1),
            (Lines{"warning: " + prefix + "expires on 2023-11-28 22:13:19 UTC, in 13 days"}));
  EXPECT_EQ(problems_ending_at(kNow + kDay), (Lines{"warning: " + prefix + "expires on 2023-11-15 22:13:20 UTC, in 1 day"}));
  // notAfter is the last valid second (RFC 5280 4.1.2.5).
  EXPECT_EQ(problems_ending_at(kNow),
            (Lines{"warning: " + prefix + "expires on 2023-11-14 22:13:20 UTC, in less than a day"}));
  EXPECT_EQ(problems_ending_at(kNow - 1), (Lines{prefix + "expired on 2023-11-14 22:13:19 UTC"}));
}

TEST(TlsFiles, EveryCertificateEntryIsChecked) {
  Config c = server_config(file("one.pem", valid_cert(ec_key())), file("one.key", private_key_pem(ec_key())));
  c.proxy.tls.certificates.push_back({file("two.pem", valid_cert(rsa_key())), dir() + "/two.key", {4, 10}, {4, 30}});
  EXPECT_EQ(problems_of(c), (Lines{"t.toml:4:30: proxy.tls.certificates[1].key: cannot read \"" + dir() +
                                   "/two.key\": No such file or directory"}));
}

TEST(TlsFiles, CaBundles) {
  const std::string bundle = file("ca.pem", valid_cert(ec_key(), "ca1") + valid_cert(rsa_key(), "ca2"));
  const std::string empty = file("ca-empty.pem", "# no certificates here\n");
  Config c = server_config(file("s.pem", valid_cert(ec_key())), file("s.key", private_key_pem(ec_key())));
  c.proxy.tls.client_ca = bundle;
  c.proxy.tls.client_ca_pos = {5, 13};
  c.upstream_tls.ca = bundle;
  c.upstream_tls.ca_pos = {8, 6};
  EXPECT_EQ(problems_of(c), Lines{});

  c.proxy.tls.client_ca = empty;
  c.upstream_tls.ca = dir() + "/nonexistent-ca.pem";
  EXPECT_EQ(problems_of(c),
            (Lines{"t.toml:5:13: proxy.tls.client_ca: no PEM certificate in \"" + empty +
                       "\" (a PEM bundle of CA certificates is expected)",
                   "t.toml:8:6: upstream_tls.ca: cannot read \"" + dir() + "/nonexistent-ca.pem\": No such file or directory"}));

  // A CA's own dates are not checked: trust stores carry expired roots.
  c.proxy.tls.client_ca = file("ca-old.pem", self_signed_pem(ec_key(), "old", kNow - 900 * kDay, kNow - 400 * kDay));
  c.upstream_tls.ca = "";
  EXPECT_EQ(problems_of(c), Lines{});
}

TEST(TlsFiles, UpstreamClientCertificate) {
  Config c;
  c.upstream_tls.cert = file("client.pem", valid_cert(rsa_key(), "client"));
  c.upstream_tls.cert_pos = {10, 8};
  c.upstream_tls.key = file("client.key", private_key_pem(rsa_key()));
  c.upstream_tls.key_pos = {11, 7};
  EXPECT_EQ(problems_of(c), Lines{});

  c.upstream_tls.key = file("client-other.key", private_key_pem(ec_key()));
  EXPECT_EQ(problems_of(c), (Lines{"t.toml:11:7: upstream_tls.key: the private key in \"" + c.upstream_tls.key +
                                   "\" does not match the certificate in \"" + c.upstream_tls.cert + "\""}));

  c.upstream_tls.cert = file("client-old.pem", self_signed_pem(ec_key(), "client", kNow - 90 * kDay, kNow - kDay));
  EXPECT_EQ(problems_of(c), (Lines{"t.toml:10:8: upstream_tls.cert: the certificate in \"" + c.upstream_tls.cert +
                                   "\" expired on 2023-11-13 22:13:20 UTC"}));
}

TEST(TlsFiles, NothingToCheckWithoutTls) {
  EXPECT_EQ(problems_of(Config{}), Lines{});
  // Entries of a listener that is not TLS are not read (the loader never fills them in
  // that case; a Config built in code might).
  Config c = server_config(dir() + "/nonexistent.pem", dir() + "/nonexistent.key");
  c.proxy.tls.enabled = false;
  EXPECT_EQ(problems_of(c), Lines{});
}

TEST(TlsFiles, ProblemsComeInFileOrder) {
  Config c = server_config(dir() + "/nonexistent.pem", dir() + "/nonexistent.key");
  c.upstream_tls.ca = dir() + "/nonexistent-ca.pem";
  c.upstream_tls.ca_pos = {1, 6};  // [upstream_tls] written before [proxy.tls]
  const Lines problems = problems_of(c);
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_TRUE(problems[0].starts_with("t.toml:1:6: upstream_tls.ca: ")) << problems[0];
  EXPECT_TRUE(problems[1].starts_with("t.toml:3:10: proxy.tls.certificates[0].cert: ")) << problems[1];
  EXPECT_TRUE(problems[2].starts_with("t.toml:3:30: proxy.tls.certificates[0].key: ")) << problems[2];
}

TEST(TlsFiles, PositionsAndKeysComeFromTheLoader) {
  const std::string cert = file("l.pem", valid_cert(ec_key()));
  const std::string text = "[proxy.tls]\ncertificates = [\n  { cert = \"" + cert + "\", key = \"" + dir() +
                           "/nonexistent.key\" },\n]\n\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  const ConfigResult r = load_config_string(text, "t.toml");
  ASSERT_TRUE(r.ok()) << r.errors[0].to_string();
  const std::string column = std::to_string(std::string("  { cert = \"" + cert + "\", key = ").size() + 1);
  EXPECT_EQ(problems_of(r.config), (Lines{"t.toml:3:" + column + ": proxy.tls.certificates[0].key: cannot read \"" +
                                          dir() + "/nonexistent.key\": No such file or directory"}));
}

TEST(TlsFiles, ToStringLikeAConfigError) {
  const TlsFileProblem error{TlsFileSeverity::kError, {2, 9}, "upstream_tls.ca", "bad"};
  EXPECT_EQ(error.to_string("f.toml"), "f.toml:2:9: upstream_tls.ca: bad");
  const TlsFileProblem warning{TlsFileSeverity::kWarning, {2, 9}, "upstream_tls.ca", "soon"};
  EXPECT_EQ(warning.to_string("f.toml"), "warning: f.toml:2:9: upstream_tls.ca: soon");
  // Not from a file (a Config built in code): 1:1, as the loader prints such errors.
  EXPECT_EQ((TlsFileProblem{TlsFileSeverity::kError, {}, "k", "m"}).to_string("f"), "f:1:1: k: m");
}

TEST(TlsFiles, HasErrors) {
  EXPECT_FALSE(has_tls_file_errors({}));
  EXPECT_FALSE(has_tls_file_errors({{TlsFileSeverity::kWarning, {}, "k", "m"}}));
  EXPECT_TRUE(has_tls_file_errors({{TlsFileSeverity::kWarning, {}, "k", "m"}, {TlsFileSeverity::kError, {}, "k", "m"}}));
}

}  // namespace
}  // namespace ringproxy
