// fuzz::dns_answer: a DNS answer as a resolver may send it (targets.h), read the way
// net/dns_resolver.h reads answers: our answer_min_ttl() and failed_question() (every
// UDP datagram c-ares reads passes it), and c-ares 1.18's parsers for the three record
// types discovery asks for. A crash or a sanitizer report is a finding;
// checked besides: a TTL is found only in a message long enough to hold the records.
#include <ares.h>

#include "fuzz/targets.h"
#include "net/dns_resolver.h"

namespace ringproxy::fuzz {

std::string dns_answer(std::span<const uint8_t> input) {
  const auto ttl = answer_min_ttl(input.data(), input.size());
  // A header (12 bytes) and at least one record (a name byte and 10 fixed bytes).
  if (ttl && input.size() < 12 + 11) return "a TTL read from a message too short to hold a record";
  if (const auto failed = failed_question(input.data(), input.size())) {
    if (failed->name.size() > 255 + 63) return "a question name longer than a DNS name can be";
    if (failed->rcode != 2 && failed->rcode != 4 && failed->rcode != 5) return "a failure rcode that is none";
  }
  const int len = static_cast<int>(input.size());
  ares_srv_reply* srv = nullptr;
  if (ares_parse_srv_reply(input.data(), len, &srv) == ARES_SUCCESS && srv != nullptr) ares_free_data(srv);
  ares_addrttl a[16];
  int na = 16;
  ares_parse_a_reply(input.data(), len, nullptr, a, &na);
  ares_addr6ttl aaaa[16];
  int naaaa = 16;
  ares_parse_aaaa_reply(input.data(), len, nullptr, aaaa, &naaaa);
  return {};
}

}  // namespace ringproxy::fuzz
